"""Play a `World` live in the browser: a small stdlib HTTP server on 127.0.0.1.

    GET  /                  the page (genie/play_page.html)
    GET  /status            JSON {ready, stage}: the page shows "loading" until the model is warm
    GET  /info              JSON: actions (key, label measured by holding it), frame size, upscale,
                            start images, temperature, MaskGIT steps, frames so far
    GET  /prompt.png        the image the world started from
    GET  /reset             back to that image; the frame (its reconstruction) as PNG
    GET  /step?action=k     one generated frame for latent action k, as PNG
    GET  /start?name=n      start again from bundled start image n; the frame as PNG
    GET  /starts/<n>.png    a start image
    POST /upload            start again from the PNG/JPEG in the body; the frame as PNG
    GET  /settings?temperature=t&steps=s   change the sampling; JSON of the settings
    GET  /rollout.gif       the frames since the last reset, as an animated GIF

Frame responses carry the frame number and the generation time in headers (`X-Frame`,
`X-Step-Ms`). A bad request gets a 4xx with a JSON `{"error": ...}` that the page shows, and the
server keeps serving. Only 127.0.0.1 is served: the model runs code paths nobody should expose
to a network.

Threads: HTTP requests arrive on threads of their own, but the model runs on one thread, the
one that first used it (`work_forever`; `serve` runs it on the main thread). PyTorch's CPU
thread pool (OpenMP) belongs to the thread that started it, and ops issued from another thread
ran 2-3x slower on a 2-core CPU (`python bench/bench_threads.py`). One model thread also
serialises the requests that change the one world, in the order they arrive.

Warm-up (`warm_up`, on the model thread, while the port already answers `/status`): compiling
the MaskGIT round (seconds to a minute on a CPU) and measuring what each action does: hold it
for `probe_frames` frames from the start image, greedily, and read the scene's mean shift
(`genie.control`): "right", "up", ... or "unclear".
"""

from __future__ import annotations

import errno
import json
import logging
import math
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

import numpy as np
import torch

from genie.control import describe, world_probe
from genie.data import to_frames
from genie.media import MediaError, gif_bytes, load_image, png_bytes, upscale

log = logging.getLogger(__name__)

KEYS = "1234567890qwetyuiopa"  # key i plays latent action i ("r" is reset)
MAX_UPLOAD = 8 * 1024 * 1024  # bytes: a start image is resized to the training frame size anyway
MAX_HISTORY = 1000  # frames kept for the GIF download (the oldest go first)
MAX_STEPS = 100  # MaskGIT rounds per frame the page may ask for
MAX_GIF_PIXELS = 200_000_000  # frames x height x width of a GIF download; above it the GIF is smaller
UPLOAD_FORMATS = ("PNG", "JPEG")  # Pillow decodes some formats with outside programs (EPS: Ghostscript)


class RequestError(ValueError):
    """A request the server refuses: its HTTP status and a message for the page."""

    def __init__(self, status: HTTPStatus, message: str):
        super().__init__(message)
        self.status = status


def load_starts(folder: str | Path, size: tuple[int, int]) -> dict[str, torch.Tensor]:
    """The start images `{name: (1 c H W)}` of a folder of PNGs (none if it does not exist)."""
    starts = {}
    for path in sorted(Path(folder).glob("*.png")) if Path(folder).is_dir() else []:
        try:
            starts[path.stem] = load_image(path, size)
        except MediaError as e:  # one bad file costs that start image, not the page
            log.warning("start image left out: %s", e)
    return starts


class PlayServer(ThreadingHTTPServer):
    """HTTP server around one `World`; `port=0` picks a free port (`server_address[1]`).

    Requests need a model thread: run `serve_forever` on one thread and `warm_up` then
    `work_forever` on the thread that owns the model (`serve` does all of it).

    Args:
        world: the world to play.
        image: the first start image `(1 c H W)` in [-1, 1].
        port: on 127.0.0.1.
        upscale: integer pixel upscale of the frames on the page and in the GIF.
        starts: more start images to pick from on the page, by name.
        fps: frame rate of the downloaded GIF.
        probe_frames: frames each action is held for to label it.
        name: what the page calls `image`.
    """

    daemon_threads = True

    def __init__(
        self,
        world,
        image: torch.Tensor,
        port: int = 8000,
        upscale: int = 4,
        starts: dict[str, torch.Tensor] | None = None,
        fps: float = 10.0,
        probe_frames: int = 6,
        name: str = "your image",
    ):
        if world.num_actions > len(KEYS):
            raise ValueError(f"{world.num_actions} latent actions, but keys for only {len(KEYS)}")
        try:
            super().__init__(("127.0.0.1", port), _Handler)
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise ValueError(f"port {port} is in use (another play.py?): pass --port with a free one") from None
            raise ValueError(f"cannot serve on 127.0.0.1:{port} ({e.strerror or e}): pass another --port") from None
        self.world, self.upscale, self.fps, self.probe_frames = world, upscale, fps, probe_frames
        self.prompt, self.prompt_name = image, name
        self.prompt_bytes = png_bytes(self._uint8(image))  # the prompt as PNG, kept with it
        self.starts = dict(starts or {})
        self.labels: list[dict] | None = None  # set by warm_up
        self.history: list[np.ndarray] = []  # (H W c) uint8 frames since the last reset
        self.ready = threading.Event()
        dynamics = getattr(world, "dynamics", None)
        measuring = "measuring what each action does"
        compiling = dynamics is not None and dynamics.compiled
        self.stage = f"compiling the MaskGIT round (once), then {measuring}" if compiling else measuring  # warm_up's
        self.jobs: queue.SimpleQueue = queue.SimpleQueue()  # (fn, args, future) for the model thread
        self.worker: int | None = None  # the thread running the model

    # --- the model thread ---
    def warm_up(self) -> None:
        """Compile (when the world's rounds are compiled) and label the actions, then reset; on
        the thread that will run `work_forever`. `/status` says `ready` afterwards."""
        self.worker = threading.get_ident()
        self.labels = self.measure_actions()
        self.reset()
        self.stage = "ready"
        self.ready.set()

    def work_forever(self, stop: threading.Event | None = None) -> None:
        """Run the requests' model work on this thread, until `stop` is set (or Ctrl-C)."""
        self.worker = threading.get_ident()
        while stop is None or not stop.is_set():
            try:
                fn, args, done = self.jobs.get(timeout=0.1)
            except queue.Empty:
                continue
            try:
                done.set_result(fn(*args))
            except Exception as e:  # handed to the request that asked, which answers with it
                done.set_exception(e)

    def on_model_thread(self, fn: Callable, *args):
        """`fn(*args)`, run by the thread in `work_forever` (directly when called from it)."""
        if threading.get_ident() == self.worker:
            return fn(*args)
        done: Future = Future()
        self.jobs.put((fn, args, done))
        return done.result()

    # --- what requests do (on the model thread) ---
    def measure_actions(self) -> list[dict]:
        """Hold each action from the start image, greedily; its label from the scene's shift."""
        temperature = self.world.temperature
        self.world.temperature = 0.0
        try:
            shifts = world_probe(self.world, self.prompt, self.probe_frames)[0]
        finally:
            self.world.temperature = temperature
        return [{"label": describe(dx, dy), "dx": dx, "dy": dy} for dx, dy in zip(shifts["dx"], shifts["dy"])]

    def reset(self, image: torch.Tensor | None = None, name: str | None = None) -> tuple[bytes, int]:
        """Back to the start image, or to a new one; the frame as PNG and its number."""
        if image is not None:
            self.prompt, self.prompt_name = image, name or "your image"
        self.prompt_bytes = png_bytes(self._uint8(self.prompt))
        frame = self._uint8(self.world.reset(self.prompt))
        self.history = [frame]
        return png_bytes(frame), self.world.frames

    def step(self, action: int) -> tuple[bytes, int, float]:
        """One frame for `action`: as PNG, its number, and the milliseconds it took."""
        start = time.perf_counter()
        frame = self._uint8(self.world.step(action))
        ms = (time.perf_counter() - start) * 1000
        self.history = self.history[-(MAX_HISTORY - 1) :] + [frame]
        return png_bytes(frame), self.world.frames, ms

    def settings(self, temperature: float | None = None, steps: int | None = None) -> dict:
        if temperature is not None:
            self.world.temperature = temperature
        if steps is not None:
            self.world.steps = steps
        return {"temperature": self.world.temperature, "steps": self.world.steps}

    def gif(self, frames: list[np.ndarray]) -> bytes:
        """`frames` (H W c) as a GIF at `upscale`, or smaller when that would be too many pixels."""
        factor = self.upscale
        while factor > 1 and len(frames) * frames[0].size // 3 * factor**2 > MAX_GIF_PIXELS:
            factor -= 1
        return gif_bytes(upscale(np.stack(frames), factor), self.fps)

    # --- read-only views (any thread) ---
    def info(self) -> dict:
        h, w = self.world.frame_shape
        labels = self.labels or [{"label": "not measured yet", "dx": 0.0, "dy": 0.0}] * self.world.num_actions
        actions = [{"key": KEYS[i], **label} for i, label in enumerate(labels)]
        return {"actions": actions, "frame": [h, w], "upscale": self.upscale, "starts": sorted(self.starts),
                "start": self.prompt_name, "frames": self.world.frames, "max_steps": MAX_STEPS,
                "max_upload": MAX_UPLOAD, "game_frames_per_step": getattr(self.world, "game_frames_per_step", 1),
                **self.settings()}  # fmt: skip

    def prompt_png(self) -> bytes:
        return self.prompt_bytes

    def _uint8(self, frame: torch.Tensor) -> np.ndarray:
        return to_frames(frame[:1, :, None])[0, 0].cpu().numpy()  # (c H W) -> (H W c)


LOCAL_HOSTS = ("127.0.0.1", "localhost")


def page() -> bytes:
    return resources.files("genie").joinpath("play_page.html").read_bytes()


def _number(query: dict, name: str, kind: type, low: float, high: float):
    """`query[name]` as `kind` in [low, high], None when absent; a RequestError when malformed."""
    if name not in query:
        return None
    try:
        value = kind(query[name][0])
    except ValueError:
        raise RequestError(HTTPStatus.BAD_REQUEST, f"{name} must be a number, got {query[name][0]!r}") from None
    if not (math.isfinite(value) and low <= value <= high):
        raise RequestError(HTTPStatus.BAD_REQUEST, f"{name} must be in {low}..{high}, got {query[name][0]}")
    return value


class _Handler(BaseHTTPRequestHandler):
    server: PlayServer
    timeout = 30  # seconds a client may stall mid-request before its connection is closed

    def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
        self._answer(self._get)

    def do_POST(self) -> None:  # noqa: N802
        self._answer(self._post)

    def _answer(self, route: Callable[[str, dict], None]) -> None:
        if not self._local_host():
            return
        url = urlparse(self.path)
        try:
            if url.path != "/":  # the page may be opened from a link; nothing else from another site
                self._same_origin()
            route(unquote(url.path), parse_qs(url.query))
        except RequestError as e:
            self._send_error(e.status, str(e))
        except (ValueError, MediaError) as e:  # a bad action id, an unreadable image, ...
            self._send_error(HTTPStatus.BAD_REQUEST, str(e))
        except ConnectionError:  # the page went away mid-answer
            self.close_connection = True
        except Exception as e:  # a failure in the model (e.g. out of memory): one line here, 500 there
            log.error("%s failed: %s: %s", url.path, type(e).__name__, e)
            self._send_error(HTTPStatus.INTERNAL_SERVER_ERROR, f"{type(e).__name__}: {e}")

    def _same_origin(self) -> None:
        """Refuse what another site's page asks of this server: a loopback server is still
        reachable from any page the browser shows (a form, an image, a fetch), and its requests
        say where they come from (`Sec-Fetch-Site`, `Origin`)."""
        site = self.headers.get("Sec-Fetch-Site")
        origin = self.headers.get("Origin")
        host = urlparse(origin).hostname if origin else None
        other_site = site is not None and site not in ("same-origin", "none")
        if other_site or (origin is not None and host not in LOCAL_HOSTS):
            self.close_connection = True
            raise RequestError(HTTPStatus.FORBIDDEN, "requests from other sites are refused")

    def _get(self, path: str, query: dict) -> None:
        server = self.server
        if path == "/":
            return self._send(page(), "text/html; charset=utf-8")
        if path == "/status":
            return self._json({"ready": server.ready.is_set(), "stage": server.stage})
        if path == "/info":
            return self._json(server.info())
        if path == "/prompt.png":
            return self._send(server.prompt_png(), "image/png")
        if path.startswith("/starts/") and path.endswith(".png"):
            image = server.starts.get(path[len("/starts/") : -len(".png")])
            if image is None:
                raise RequestError(HTTPStatus.NOT_FOUND, f"no start image {path}")
            return self._send(png_bytes(server._uint8(image)), "image/png")
        if path not in ("/reset", "/step", "/start", "/settings", "/rollout.gif"):
            raise RequestError(HTTPStatus.NOT_FOUND, f"no page {path}")
        self._ready()  # the rest needs the model
        if path == "/reset":
            return self._frame(*server.on_model_thread(server.reset))
        if path == "/step":
            action = _number(query, "action", int, 0, server.world.num_actions - 1)
            if action is None:
                raise RequestError(HTTPStatus.BAD_REQUEST, "step needs ?action=<latent action>")
            return self._frame(*server.on_model_thread(server.step, action))
        if path == "/start":
            name = query.get("name", [""])[0]
            if name not in server.starts:
                raise RequestError(HTTPStatus.NOT_FOUND, f"no start image {name!r}; there are {sorted(server.starts)}")
            return self._frame(*server.on_model_thread(server.reset, server.starts[name], name))
        if path == "/settings":
            temperature = _number(query, "temperature", float, 0.0, 10.0)
            steps = _number(query, "steps", int, 1, MAX_STEPS)
            return self._json(server.on_model_thread(server.settings, temperature, steps))
        frames = server.on_model_thread(lambda: list(server.history))  # /rollout.gif: encoded off the model thread
        gif = server.gif(frames)
        return self._send(gif, "image/gif", {"Content-Disposition": 'attachment; filename="rollout.gif"'})

    def _post(self, path: str, query: dict) -> None:
        if path != "/upload":
            self.close_connection = True  # the body, if any, is not read
            self.send_response(HTTPStatus.METHOD_NOT_ALLOWED)  # the page only reads, but for uploads
            self.send_header("Allow", "GET")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self._ready()
        try:
            size = int(self.headers.get("Content-Length", ""))
        except ValueError:
            self.close_connection = True
            raise RequestError(HTTPStatus.LENGTH_REQUIRED, "an upload needs a Content-Length") from None
        if not 0 < size <= MAX_UPLOAD:
            self.close_connection = True  # the body is not read: no more requests on this connection
            status = HTTPStatus.REQUEST_ENTITY_TOO_LARGE if size > 0 else HTTPStatus.BAD_REQUEST
            raise RequestError(status, f"an upload is an image of up to {MAX_UPLOAD // 2**20} MB, got {size} bytes")
        body = self.rfile.read(size)
        name = "".join(c for c in query.get("name", ["the upload"])[0][:100] if c.isprintable()) or "the upload"
        image = load_image(body, self.server.world.frame_shape, name=name, formats=UPLOAD_FORMATS)  # MediaError: 400
        self._frame(*self.server.on_model_thread(self.server.reset, image, name))

    def _ready(self) -> None:
        if not self.server.ready.is_set():
            raise RequestError(HTTPStatus.SERVICE_UNAVAILABLE, f"the model is still loading ({self.server.stage})")

    def _local_host(self) -> bool:
        """Whether the request names this machine. The server listens on loopback only, but a page
        from elsewhere can still reach it through a DNS name that resolves to 127.0.0.1 (DNS
        rebinding); its requests carry that name in `Host`, so they are refused with 403."""
        host = (self.headers.get("Host") or "").strip().lower()
        name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
        if name in LOCAL_HOSTS:
            return True
        self.close_connection = True
        self._send_error(HTTPStatus.FORBIDDEN, "only http://127.0.0.1 or http://localhost may use this page")
        return False

    def _frame(self, png: bytes, number: int, ms: float | None = None) -> None:
        headers = {"X-Frame": str(number)}
        if ms is not None:
            headers["X-Step-Ms"] = f"{ms:.1f}"
        self._send(png, "image/png", headers)

    def _json(self, value: dict) -> None:
        self._send(json.dumps(value).encode(), "application/json")

    def _send_error(self, status: HTTPStatus, message: str) -> None:
        self._send(json.dumps({"error": message}).encode(), "application/json", status=status)

    def _send(self, body: bytes, kind: str, headers: dict[str, str] | None = None,
              status: HTTPStatus = HTTPStatus.OK) -> None:  # fmt: skip
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        if status == HTTPStatus.SERVICE_UNAVAILABLE:
            self.send_header("Retry-After", "1")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def _refuse_method(self) -> None:  # GET for everything, POST for uploads
        self.close_connection = True
        self.send_response(HTTPStatus.METHOD_NOT_ALLOWED)
        self.send_header("Allow", "GET, POST")
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_PUT = do_DELETE = do_PATCH = _refuse_method  # noqa: N815 (the stdlib's names)

    def log_message(self, format: str, *args) -> None:  # quiet: one line per frame would flood the terminal
        pass


def serve(world, image: torch.Tensor, port: int = 8000, **kwargs) -> int:
    """Serve until Ctrl-C, the model on this thread; returns an exit status. `kwargs` go to
    `PlayServer` (upscale, starts, fps, name)."""
    server = PlayServer(world, image, port, **kwargs)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    try:
        print(f"page at {url} (it says 'loading' until the model is ready)", flush=True)
        print(f"{server.stage}: about 5-60 s on a CPU (--no-compile skips compiling)...", flush=True)
        start = time.perf_counter()
        dynamics = getattr(world, "dynamics", None)
        wanted = dynamics is not None and dynamics.compiled
        server.warm_up()
        state = "uncompiled" if not wanted else "compiled" if dynamics.compiled else "compiling failed, uncompiled"
        labels = ", ".join(f"{KEYS[i]} = {a['label']}" for i, a in enumerate(server.labels))
        k = getattr(world, "game_frames_per_step", 1)
        if k > 1:
            labels += f"; each frame is {k} game frames after the last"
        print(f"ready in {time.perf_counter() - start:.0f} s ({state}); playing on {url}  ({labels}; r = reset; "
              "Ctrl-C stops)", flush=True)  # fmt: skip
        server.work_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.shutdown()
        server.server_close()
    return 0
