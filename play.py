"""Play a learned world from one image: a GIF/MP4 rollout, or live in the browser.

    python play.py --checkpoint runs/genie.tiny/checkpoints/last.ckpt \\
        --tokenizer_checkpoint runs/tokenizer.tiny/checkpoints/last.ckpt --image res/example.png --output out.gif
    python play.py ... --actions 0,0,3,3,5 --num_frames 20    # a sequence of latent actions (repeats)
    python play.py ... --batch                               # one rollout per latent action, side by side
    python play.py ... --interactive                         # a page on http://127.0.0.1:8000 (compiled rounds)

With no checkpoint or image arguments the bundled model and example image under `res/` are
used. The image may be any size or mode (it is resized to the training frame size with a
warning); the output's suffix picks GIF or MP4.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from genie import maskgit
from genie.checkpoints import CheckpointError
from genie.data import to_frames
from genie.media import MediaError, check_video_path, load_image, tile, upscale, write_video
from genie.world import World, load_world

RES = Path(__file__).resolve().parent / "res"
BUNDLED = {  # the small model and example image a fresh clone plays
    "checkpoint": RES / "genie.ckpt",
    "tokenizer_checkpoint": RES / "tokenizer.ckpt",
    "image": RES / "example.png",
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="play.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", help="genie.py fit checkpoint (LAM + dynamics); default: res/genie.ckpt")
    p.add_argument("--tokenizer_checkpoint", help="the tokenizer it was trained on; default: res/tokenizer.ckpt")
    p.add_argument("--image", help="prompt image, any size/mode; default: res/example.png")
    p.add_argument("--output", default="rollout.gif", help="rollout file, .gif or .mp4 (default: rollout.gif)")
    p.add_argument("--actions", help="latent actions per step, e.g. 0,0,3,3,5 (cycled) or 3 (repeated); default 0")
    p.add_argument("--num_frames", type=int, help="frames to generate (default: 16, or the length of --actions)")
    p.add_argument("--steps", type=int, default=maskgit.STEPS, help="MaskGIT rounds per frame (Genie: 25)")
    p.add_argument("--temperature", type=float, default=1.0, help="sampling temperature; 0 is greedy")
    p.add_argument("--seed", type=int, default=0, help="random seed of the sampling")
    p.add_argument("--render", default="tokens", choices=("tokens", "expected"),
                   help="show each frame's sampled tokens (Genie) or each token's expected code under the model")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    p.add_argument("--batch", action="store_true", help="one rollout per latent action, side by side")
    p.add_argument(
        "--compile", action=argparse.BooleanOptionalAction,
        help="torch.compile the MaskGIT round: 5-20 s once on a CPU (cached on disk after), then about 1.2-1.7x the "
        "frames/s. Default: on with --interactive, off for a file (a 16-frame rollout saves less than it costs)",
    )  # fmt: skip
    p.add_argument("--upscale", type=int, default=4, help="pixel upscale of the output and the page (default 4)")
    p.add_argument("--fps", type=float, default=10.0, help="frame rate of the output file and the page GIF")
    p.add_argument("--interactive", action="store_true", help="serve a page to play live instead of a file")
    p.add_argument("--port", type=int, default=8000, help="port of --interactive (on 127.0.0.1 only)")
    args = p.parse_args(argv)
    if args.batch and args.actions:
        p.error("--batch plays every latent action in its own rollout; it does not take --actions")
    if args.interactive and (args.batch or args.actions or args.num_frames):
        p.error("--interactive plays live from the page; it does not take --batch, --actions or --num_frames")
    if args.upscale is not None and args.upscale > 16:
        p.error(f"--upscale must be <= 16 (a 64x64 frame becomes 1024x1024), got {args.upscale}")
    for name in ("num_frames", "steps", "upscale"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            p.error(f"--{name} must be >= 1")
    if not args.temperature >= 0:
        p.error(f"--temperature must be >= 0 (0 is greedy), got {args.temperature}")
    if not args.fps > 0:
        p.error(f"--fps must be positive, got {args.fps}")
    if not 1 <= args.port <= 65535:
        p.error(f"--port must be in 1..65535, got {args.port}")
    if not args.interactive:  # before any work: a rollout that cannot be saved is lost
        try:
            check_video_path(args.output)
        except MediaError as e:
            p.error(str(e))
    if args.compile is None:
        args.compile = args.interactive
    return args


def parse_actions(spec: str | None, num_actions: int) -> list[int]:
    """'0,0,3,3,5' -> [0, 0, 3, 3, 5]; every id must be a latent action of the model."""
    if not spec:
        return [0]
    try:
        actions = [int(a) for a in spec.replace(" ", "").split(",") if a != ""]
    except ValueError:
        raise ValueError(f"--actions takes comma-separated integers like 0,0,3,3,5, got {spec!r}") from None
    bad = [a for a in actions if not 0 <= a < num_actions]
    if not actions or bad:
        raise ValueError(f"--actions: this model has latent actions 0..{num_actions - 1}, got {spec!r}")
    return actions


def resolve_inputs(args: argparse.Namespace) -> tuple[str, str, str]:
    """The checkpoint, tokenizer checkpoint and image to use: given ones, else the bundled ones."""
    paths = []
    for name in ("checkpoint", "tokenizer_checkpoint", "image"):
        given = getattr(args, name)
        if given is None and not BUNDLED[name].is_file():
            raise CheckpointError(
                f"--{name} not given and no bundled {BUNDLED[name].relative_to(RES.parent)} in this checkout; pass "
                "--checkpoint <genie.py ckpt> --tokenizer_checkpoint <tokenizer.py ckpt> --image <png>"
            )
        paths.append(str(given or BUNDLED[name]))
    return paths[0], paths[1], paths[2]


def rollout(world: World, image: torch.Tensor, actions: list[int] | torch.Tensor, num_frames: int) -> np.ndarray:
    """Frames `(b t H W c)` uint8: the prompt's reconstruction, then `num_frames` generated ones.

    `actions` is cycled over the steps: a list of ints (the same for every world), or a tensor
    `(b k)` of one sequence per world.
    """
    seq = actions if torch.is_tensor(actions) else torch.tensor(actions)[None]  # (b k)
    frames = [world.reset(image.expand(seq.shape[0], -1, -1, -1))]
    bar = tqdm(range(num_frames), desc="frames", unit="frame", disable=None)
    for i in bar:
        frames.append(world.step(seq[:, i % seq.shape[1]]))
    return to_frames(torch.stack(frames, dim=2)).cpu().numpy()  # (b c t H W) -> (b t H W c)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="play.py: warning: %(message)s")
    args = parse_args(argv)
    try:
        checkpoint, tokenizer_checkpoint, image_path = resolve_inputs(args)
        generator = torch.Generator(device=args.device).manual_seed(args.seed)
        world = load_world(
            checkpoint, tokenizer_checkpoint, args.device, steps=args.steps, temperature=args.temperature,
            generator=generator, compile=args.compile, render=args.render,
        )  # fmt: skip
        image = load_image(image_path, world.frame_shape).to(args.device)
        if args.interactive:
            from genie.serve import load_starts, serve

            starts = load_starts(RES / "starts", world.frame_shape)  # held-out frames to pick from on the page
            return serve(world, image, port=args.port, upscale=args.upscale, starts=starts, fps=args.fps,
                         name=Path(image_path).name)  # fmt: skip
        if args.batch:
            actions = torch.arange(world.num_actions)[:, None]  # world i plays action i throughout
            num_frames = args.num_frames or 16
        else:
            seq = parse_actions(args.actions, world.num_actions)
            actions, num_frames = seq, args.num_frames or (len(seq) if len(seq) > 1 else 16)
        start = time.perf_counter()
        videos = rollout(world, image, actions, num_frames)
        rate = num_frames / (time.perf_counter() - start)
        out = write_video(args.output, upscale(tile(videos), args.upscale), args.fps)
    except (CheckpointError, MediaError, ValueError, RuntimeError) as e:
        print(f"play.py: error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {out}: {videos.shape[0]} rollout(s) x {videos.shape[1]} frames, {rate:.1f} generated frames/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
