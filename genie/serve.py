"""Play a `World` live in the browser: a small stdlib HTTP server on 127.0.0.1.

    GET /                  the page: the frame, the keys of the latent actions, frames/s
    GET /reset             back to the prompt image; the frame as PNG
    GET /step?action=k     one generated frame for latent action k, as PNG
    GET /info              JSON: number of actions, their keys, frame size

The page sends a step per key press and, while a key is held, the next step as soon as the
previous frame arrives, so holding a key plays at the model's frame rate. Response headers
carry the frame number and the generation time (`X-Frame`, `X-Step-Ms`). Only 127.0.0.1 is
served: the model runs code paths nobody should expose to a network.

Threads: HTTP requests arrive on threads of their own, but the model runs on one thread, the
one that first used it (`work_forever`; `serve` runs it on the main thread). PyTorch's CPU
thread pool (OpenMP) belongs to the thread that started it, and ops issued from another
thread ran 2-3x slower on the 2-core CPU (`python bench/bench_threads.py`: a 256x64 @ 64x192
matmul 45-52 us on the main thread, 130-141 us from a second one; `World.step` of the tiny
preset 14-16 vs 6.5-6.9 frames/s). One model thread also serialises the steps of the one world.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import torch

from genie.data import to_frames
from genie.media import png_bytes
from genie.world import World

KEYS = "1234567890qwertyuiop"  # key i plays latent action i


class PlayServer(ThreadingHTTPServer):
    """HTTP server around one `World`; `port=0` picks a free port (`server_address[1]`).

    Requests need a model thread: run `serve_forever` on one thread and `work_forever` on the
    thread that owns the model (`serve` does both).
    """

    daemon_threads = True

    def __init__(self, world: World, image: torch.Tensor, port: int = 8000, upscale: int = 6):
        if world.num_actions > len(KEYS):
            raise ValueError(f"{world.num_actions} latent actions, but keys for only {len(KEYS)}")
        super().__init__(("127.0.0.1", port), _Handler)
        self.world, self.image, self.upscale = world, image, upscale
        self.jobs: queue.SimpleQueue = queue.SimpleQueue()  # (fn, args, future) for the model thread
        self.worker: int | None = None  # the thread running work_forever
        self.reset()

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

    def reset(self) -> bytes:
        return self._png(self.world.reset(self.image))

    def step(self, action: int) -> tuple[bytes, float]:
        start = time.perf_counter()
        frame = self.world.step(action)
        return self._png(frame), (time.perf_counter() - start) * 1000

    def info(self) -> dict:
        h, w = self.world.frame_shape
        return {"num_actions": self.world.num_actions, "keys": KEYS[: self.world.num_actions], "frame": [h, w],
                "upscale": self.upscale, "steps": self.world.steps}  # fmt: skip

    def _png(self, frame: torch.Tensor) -> bytes:
        return png_bytes(to_frames(frame[:1, :, None])[0, 0].cpu().numpy())  # (c H W) -> (H W c)


LOCAL_HOSTS = ("127.0.0.1", "localhost")


class _Handler(BaseHTTPRequestHandler):
    server: PlayServer

    def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
        if not self._local_host():
            return
        url = urlparse(self.path)
        try:
            if url.path == "/":
                self._send(PAGE.encode(), "text/html; charset=utf-8")
            elif url.path == "/info":
                self._send(json.dumps(self.server.info()).encode(), "application/json")
            elif url.path == "/reset":
                png = self.server.on_model_thread(self.server.reset)
                self._send(png, "image/png", {"X-Frame": str(self.server.world.frames)})
            elif url.path == "/step":
                action = int(parse_qs(url.query).get("action", ["x"])[0])
                png, ms = self.server.on_model_thread(self.server.step, action)
                self._send(png, "image/png", {"X-Frame": str(self.server.world.frames), "X-Step-Ms": f"{ms:.1f}"})
            else:
                self.send_error(HTTPStatus.NOT_FOUND)
        except ValueError as e:  # a bad or out-of-range action id
            self.send_error(HTTPStatus.BAD_REQUEST, str(e))

    def _refuse_method(self) -> None:  # the page only reads: 405 with the method it takes
        self.send_response(HTTPStatus.METHOD_NOT_ALLOWED)
        self.send_header("Allow", "GET")
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_POST = do_PUT = do_DELETE = do_PATCH = _refuse_method  # noqa: N815 (the stdlib's names)

    def _local_host(self) -> bool:
        """Whether the request names this machine. The server listens on loopback only, but a page
        from elsewhere can still reach it through a DNS name that resolves to 127.0.0.1 (DNS
        rebinding); its requests carry that name in `Host`, so they are refused with 403."""
        host = (self.headers.get("Host") or "").strip().lower()
        name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
        if name in LOCAL_HOSTS:
            return True
        self.send_error(HTTPStatus.FORBIDDEN, "only http://127.0.0.1 or http://localhost may use this page")
        return False

    def _send(self, body: bytes, kind: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args) -> None:  # quiet: one line per frame would flood the terminal
        pass


def serve(world: World, image: torch.Tensor, port: int = 8000) -> int:
    """Serve until Ctrl-C, the model on this thread; returns an exit status."""
    server = PlayServer(world, image, port)
    if world.dynamics.compiled:  # compile now, not at the first key press
        print("compiling the MaskGIT round (once: 5-20 s on a CPU; --no-compile skips)...", flush=True)
        start = time.perf_counter()
        server.step(0)
        server.reset()
        state = "compiled" if world.dynamics.compiled else "compiling failed, uncompiled"
        print(f"ready in {time.perf_counter() - start:.0f} s ({state})")
    keys = ", ".join(f"{k} = action {i}" for i, k in enumerate(KEYS[: world.num_actions]))
    print(f"playing on http://127.0.0.1:{server.server_address[1]}/  ({keys}; r = reset; Ctrl-C stops)")
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        server.work_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.shutdown()
        server.server_close()
    return 0


PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>Genie: play the learned world</title>
<style>
 body { font-family: sans-serif; background: #222; color: #eee; text-align: center; }
 img { image-rendering: pixelated; border: 1px solid #555; }
 kbd { background: #444; border-radius: 3px; padding: 1px 6px; }
 #legend span { margin: 0 8px; } #legend .on { color: #fc6; }
</style></head>
<body>
<h2>Genie: play the learned world</h2>
<img id="frame" src="/reset" alt="frame">
<p id="legend"></p>
<p>hold a key to keep playing &middot; <kbd>r</kbd> reset &middot;
 <span id="fps">0.0</span> frames/s &middot; frame <span id="n">1</span> &middot;
 <span id="ms">-</span> ms per generated frame</p>
<script>
let keys = "", held = null, busy = false, shown = [];
const img = document.getElementById("frame");
async function show(url) {
  busy = true;
  try {
    const r = await fetch(url, {cache: "no-store"});
    if (!r.ok) return;
    const old = img.src;
    img.src = URL.createObjectURL(await r.blob());
    if (old.startsWith("blob:")) URL.revokeObjectURL(old);
    document.getElementById("n").textContent = r.headers.get("X-Frame");
    if (r.headers.get("X-Step-Ms")) document.getElementById("ms").textContent = r.headers.get("X-Step-Ms");
    const now = performance.now(); shown.push(now); shown = shown.filter(t => now - t < 2000);
    document.getElementById("fps").textContent = (shown.length / 2).toFixed(1);
  } finally { busy = false; }
  if (held !== null) show("/step?action=" + held);  // key still down: next frame at once
}
fetch("/info").then(r => r.json()).then(info => {
  keys = info.keys;
  img.width = info.frame[1] * info.upscale; img.height = info.frame[0] * info.upscale;
  document.getElementById("legend").innerHTML = [...keys].map(
    (k, i) => `<span id="k${i}"><kbd>${k}</kbd> action ${i}</span>`).join("");
});
document.addEventListener("keydown", e => {
  if (e.key === "r") { held = null; if (!busy) show("/reset"); return; }
  const a = keys.indexOf(e.key);
  if (a < 0 || e.repeat) return;
  held = a; document.getElementById("k" + a).className = "on";
  if (!busy) show("/step?action=" + a);
});
document.addEventListener("keyup", e => {
  const a = keys.indexOf(e.key);
  if (a >= 0) { document.getElementById("k" + a).className = ""; if (held === a) held = null; }
});
</script>
</body></html>
"""
