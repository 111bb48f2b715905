"""Images in, videos out: prompt images for play, GIF/MP4 rollouts and PNG frames.

Shape legend: t frames, H W pixels, c = 3 channels; n videos tiled side by side.
Frames travel as uint8 `(t H W c)` arrays between the models and the files; the conversions
to and from model floats are `genie.data`'s `to_video` / `to_frames`, as for training clips.

GIF needs nothing beyond Pillow (already a requirement); MP4 uses `imageio` with its ffmpeg
plugin when installed (`pip install imageio[ffmpeg]`) and says so when not.
"""

from __future__ import annotations

import io
import logging
import os
from pathlib import Path

import numpy as np
import torch

from genie.data import to_video

log = logging.getLogger(__name__)
VIDEO_SUFFIXES = (".gif", ".mp4")
MAX_IMAGE_PIXELS = 4096 * 4096  # a start frame is resized to 64x64: anything larger is a mistake or an attack


class MediaError(ValueError):
    """An image that cannot be read or a video that cannot be written as asked."""


def load_image(source: str | Path | bytes, size: tuple[int, int], name: str | None = None,
               formats: tuple[str, ...] | None = None) -> torch.Tensor:  # fmt: skip
    """Read any image Pillow reads as RGB `(1 c H W)` in [-1, 1], resized to `size = (H, W)`.

    `source` is a path, or the bytes of an image file (an upload; `name` says what it was);
    `formats` limits the Pillow formats tried (e.g. ("PNG", "JPEG") for an upload).
    A different size is resized (bilinear) with one warning line; a missing or non-image file, or
    one of more than `MAX_IMAGE_PIXELS` pixels (a decompression bomb is refused before it is
    decoded), raises `MediaError` with the reason. 16-bit images are scaled to 8 bits, not clipped.
    """
    from PIL import Image, UnidentifiedImageError

    if isinstance(source, bytes):
        what, opened = name or "the image", io.BytesIO(source)
    else:
        what = opened = Path(source)
        if not opened.is_file():
            raise MediaError(f"no image at {opened}")
    try:
        with Image.open(opened, formats=formats) as img:
            if img.size[0] * img.size[1] > MAX_IMAGE_PIXELS:  # from the header, before decoding
                raise MediaError(f"{what} is {img.size[0]}x{img.size[1]} pixels, more than the "
                                 f"{MAX_IMAGE_PIXELS:,} an image may have here")  # fmt: skip
            img.load()
            rgb = _to_rgb(img)
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as e:
        if isinstance(e, MediaError):
            raise
        raise MediaError(f"{what} is not a readable image ({type(e).__name__}: {e})") from e
    h, w = size
    if rgb.size != (w, h):
        log.warning("%s is %dx%d (%s); resizing to %dx%d", what, rgb.size[0], rgb.size[1], img.mode, w, h)
        rgb = rgb.resize((w, h), Image.BILINEAR)
    array = torch.from_numpy(np.asarray(rgb, dtype=np.uint8).copy())
    return to_video(array[None, None])[:, :, 0]  # (1 c H W): the data pipeline's one conversion


def _to_rgb(img):
    """A Pillow image as 8-bit RGB. Pillow's own `convert` clips 16-bit grey ("I;16", "I") to
    255, which turns mid-grey white; scale those by 257 (65535 -> 255) instead."""
    from PIL import Image

    if img.mode.startswith("I;16") or (img.mode == "I" and np.asarray(img).max(initial=0) <= 65535):
        grey = (np.asarray(img, dtype=np.float64) / 257).round().clip(0, 255).astype(np.uint8)
        return Image.fromarray(grey).convert("RGB")
    return img.convert("RGB")


def tile(videos: np.ndarray, gap: int = 2) -> np.ndarray:
    """`(n t H W c)` videos -> one `(t H n*W+(n-1)*gap c)` video, side by side on white gaps."""
    n, t, h, w, c = videos.shape
    out = np.full((t, h, n * w + (n - 1) * gap, c), 255, dtype=np.uint8)
    for i in range(n):
        out[:, :, i * (w + gap) : i * (w + gap) + w] = videos[i]
    return out


def upscale(frames: np.ndarray, factor: int) -> np.ndarray:
    """Nearest-neighbour integer upscale of `(... H W c)` so 64x64 frames are visible."""
    if factor < 1:
        raise MediaError(f"upscale must be a positive integer, got {factor}")
    return frames if factor == 1 else frames.repeat(factor, axis=-3).repeat(factor, axis=-2)


def png_bytes(frame: np.ndarray) -> bytes:
    """One `(H W c)` uint8 frame as PNG bytes."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, format="PNG")
    return buf.getvalue()


def save_png(path: Path, image: np.ndarray) -> None:
    """Write an `(h w c)` uint8 image atomically (temp file, then rename)."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    Image.fromarray(image).save(tmp, format="PNG")
    tmp.replace(path)


def write_video(path: str | Path, frames: np.ndarray, fps: float = 10.0) -> Path:
    """Write `(t H W c)` uint8 frames as an animated GIF or an MP4, chosen by `path`'s suffix.

    Written to a temporary name and renamed, so an interrupted write never leaves a partial file.
    """
    path = check_video_path(path)
    suffix = path.suffix.lower()
    if not fps > 0:
        raise MediaError(f"the frame rate must be positive, got {fps}")
    if frames.ndim != 4 or frames.dtype != np.uint8:
        raise MediaError(f"expected uint8 frames (t, H, W, c), got {frames.dtype} {frames.shape}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{suffix}")
    try:
        if suffix == ".gif":
            _write_gif(tmp, frames, fps)
        else:
            _write_mp4(tmp, frames, fps)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def check_video_path(path: str | os.PathLike) -> Path:
    """`path` as a `Path` if a video can be written there, else a `MediaError`; cheap, so callers
    check before the work whose result would be lost."""
    path = Path(path)
    if path.suffix.lower() not in VIDEO_SUFFIXES:
        raise MediaError(f"{path}: the output must end in {' or '.join(VIDEO_SUFFIXES)}")
    if path.is_dir():
        raise MediaError(f"{path} is a folder; name the output file")
    for parent in path.parents:  # the nearest existing ancestor must be a folder we can write in
        if parent.exists():
            if not parent.is_dir():
                raise MediaError(f"cannot write {path}: {parent} is a file, not a folder")
            if not os.access(parent, os.W_OK):
                raise MediaError(f"cannot write {path}: {parent} is not writable")
            break
    return path


def gif_bytes(frames: np.ndarray, fps: float = 10.0) -> bytes:
    """`(t H W c)` uint8 frames as the bytes of an animated GIF."""
    buf = io.BytesIO()
    _write_gif(buf, frames, fps)
    return buf.getvalue()


def _write_gif(path: Path | io.BytesIO, frames: np.ndarray, fps: float) -> None:
    from PIL import Image

    images = [Image.fromarray(f) for f in frames]
    duration = max(20, round(1000 / fps))  # ms per frame; browsers clamp below 20 ms
    images[0].save(path, format="GIF", save_all=True, append_images=images[1:], duration=duration, loop=0)


def _write_mp4(path: Path, frames: np.ndarray, fps: float) -> None:
    try:
        import imageio.v3 as iio
    except ImportError as e:
        raise MediaError("MP4 output needs imageio with ffmpeg: pip install 'imageio[ffmpeg]' (or write a .gif)") from e
    h, w = frames.shape[1:3]
    if h % 2 or w % 2:  # yuv420p, which players expect, needs even sides
        frames = np.pad(frames, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")
    try:
        iio.imwrite(path, frames, fps=fps, codec="libx264", extension=".mp4")
    except Exception as e:  # the ffmpeg plugin missing or failing
        raise MediaError(f"could not write MP4 ({type(e).__name__}: {e}); pip install 'imageio[ffmpeg]'") from e
