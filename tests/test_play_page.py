"""The play page's server (`genie.serve`) and the page itself, driven in headless Chromium.

The world is the tiny synthetic one of `helpers.worlds` (8x8 frames, 3 actions with known
rules); the server runs in this process, the model on a thread of its own as in `play.py`.
"""

import http.client
import io
import json
import shutil
import threading
import time

import numpy as np
import pytest
from PIL import Image

from genie.media import load_image
from genie.serve import MAX_UPLOAD, PlayServer
from genie.world import load_world
from helpers.worlds import ACTIONS, FRAME_SKIP, SIDE, build_synthetic

UPSCALE = 5


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    return build_synthetic(tmp_path_factory.mktemp("world"))


def png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


class Running:
    """A page server with the synthetic world, its model thread warmed up or not."""

    def __init__(self, synthetic, warm: bool = True):
        self.world = load_world(str(synthetic["genie"]), str(synthetic["tokenizer"]), temperature=0.0)
        rng = np.random.default_rng(1)
        starts = {f"start-{i}": load_image(png((rng.random((SIDE, SIDE, 3)) * 255).astype(np.uint8)), (SIDE, SIDE))
                  for i in range(2)}  # fmt: skip
        self.prompt = load_image(synthetic["image"], (SIDE, SIDE))
        self.server = PlayServer(self.world, self.prompt, port=0, upscale=UPSCALE, starts=starts, name="prompt.png")
        self.port = self.server.server_address[1]
        self.stop = threading.Event()
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        if warm:
            self.warm()

    def warm(self) -> None:
        def model_thread():
            self.server.warm_up()
            self.server.work_forever(self.stop)

        threading.Thread(target=model_thread, daemon=True).start()
        assert self.server.ready.wait(60)

    def ask(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        conn.request(method, path, body=body, headers=headers or {})
        reply = conn.getresponse()
        data = reply.read()
        conn.close()
        return reply, data

    def close(self) -> None:
        self.stop.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def running(synthetic):
    run = Running(synthetic)
    yield run
    run.close()


def frame_of(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def test_the_port_answers_while_loading_and_frames_wait_for_the_model(synthetic):
    run = Running(synthetic, warm=False)
    try:
        reply, data = run.ask("GET", "/status")
        assert reply.status == 200 and json.loads(data)["ready"] is False
        reply, data = run.ask("GET", "/step?action=0")
        assert reply.status == 503 and reply.getheader("Retry-After") == "1" and "loading" in json.loads(data)["error"]
        assert run.ask("GET", "/")[0].status == 200  # the page itself, which shows "loading"
        run.warm()
        assert json.loads(run.ask("GET", "/status")[1]) == {"ready": True, "stage": "ready"}
        assert run.ask("GET", "/step?action=0")[0].status == 200
    finally:
        run.close()


def test_info_labels_every_action_by_measurement_and_lists_the_starts(running):
    info = json.loads(running.ask("GET", "/info")[1])
    assert [a["key"] for a in info["actions"]] == ["1", "2", "3"]
    for a in info["actions"]:  # 8x8 frames of noise have no scene to shift: whatever is measured is a word
        assert a["label"] in ("unclear", "left", "right", "up", "down") or " + " in a["label"]
        assert np.isfinite([a["dx"], a["dy"]]).all()
    assert info["starts"] == ["start-0", "start-1"] and info["start"] == "prompt.png"
    assert info["frame"] == [SIDE, SIDE] and info["upscale"] == UPSCALE and info["frames"] == 1
    assert info["game_frames_per_step"] == FRAME_SKIP  # from the checkpoint: the page says what a frame is


def test_the_prompt_is_served_and_a_start_image_or_an_upload_replaces_it(running):
    original = frame_of(running.ask("GET", "/prompt.png")[1])
    assert original.shape == (SIDE, SIDE, 3)
    running.ask("GET", "/step?action=1")
    reply, _ = running.ask("GET", "/start?name=start-1")
    assert reply.status == 200 and reply.getheader("X-Frame") == "1"
    assert not np.array_equal(frame_of(running.ask("GET", "/prompt.png")[1]), original)
    assert running.ask("GET", "/start?name=nope")[0].status == 404
    assert running.ask("GET", "/starts/../../etc/passwd.png")[0].status == 404
    big = np.zeros((32, 48, 3), np.uint8)
    big[:, :24] = 255  # white left half, black right half: resized, still white then black
    reply, _ = running.ask("POST", "/upload?name=half.png", body=png(big))
    assert reply.status == 200 and reply.getheader("X-Frame") == "1"
    prompt = frame_of(running.ask("GET", "/prompt.png")[1]).astype(int)
    assert prompt.shape == (SIDE, SIDE, 3) and prompt[:, 0].min() > 200 and prompt[:, -1].max() < 50
    assert json.loads(running.ask("GET", "/info")[1])["start"] == "half.png"


def test_bad_uploads_are_4xx_with_a_reason_and_the_world_plays_on(running):
    running.ask("GET", "/step?action=2")
    reply, data = running.ask("POST", "/upload?name=notes.txt", body=b"not an image at all")
    assert reply.status == 400 and "notes.txt is not a readable image" in json.loads(data)["error"]
    reply, data = running.ask("POST", "/upload", body=b"x", headers={"Content-Length": str(MAX_UPLOAD + 1)})
    assert reply.status == 413 and "MB" in json.loads(data)["error"]
    reply, data = running.ask("POST", "/upload", body=b"")
    assert reply.status == 400
    reply, _ = running.ask("GET", "/step?action=0")  # the same world, one frame further
    assert reply.status == 200 and reply.getheader("X-Frame") == "3"


@pytest.mark.parametrize("query", ["temperature=-1", "temperature=nan", "steps=0", "steps=1000", "steps=two"])
def test_bad_settings_are_400_and_change_nothing(running, query):
    before = json.loads(running.ask("GET", "/info")[1])
    reply, data = running.ask("GET", "/settings?" + query)
    assert reply.status == 400 and json.loads(data)["error"]
    after = json.loads(running.ask("GET", "/info")[1])
    assert (after["temperature"], after["steps"]) == (before["temperature"], before["steps"])


def test_settings_reach_the_world(running):
    reply, data = running.ask("GET", "/settings?temperature=0.5&steps=3")
    assert reply.status == 200 and json.loads(data) == {"temperature": 0.5, "steps": 3}
    assert (running.world.temperature, running.world.steps) == (0.5, 3)


def test_the_rollout_downloads_as_a_gif_of_every_frame_since_the_reset(running):
    running.ask("GET", "/reset")
    for a in (1, 2, 1):  # each changes the frame (Pillow merges repeated frames into one longer one)
        running.ask("GET", f"/step?action={a}")
    reply, data = running.ask("GET", "/rollout.gif")
    assert reply.status == 200 and "attachment" in reply.getheader("Content-Disposition")
    gif = Image.open(io.BytesIO(data))
    assert gif.n_frames == 4 and gif.size == (SIDE * UPSCALE, SIDE * UPSCALE)


def test_only_png_and_jpeg_are_decoded_from_uploads(running):
    buf = io.BytesIO()
    Image.fromarray(np.zeros((SIDE, SIDE, 3), np.uint8)).save(buf, format="GIF")  # a real image, another format
    reply, data = running.ask("POST", "/upload?name=a.gif", body=buf.getvalue())
    assert reply.status == 400 and "a.gif is not a readable image" in json.loads(data)["error"]
    jpeg = io.BytesIO()
    Image.fromarray(np.full((SIDE, SIDE, 3), 128, np.uint8)).save(jpeg, format="JPEG")
    assert running.ask("POST", "/upload?name=a.jpg", body=jpeg.getvalue())[0].status == 200


@pytest.mark.parametrize("headers", [{"Sec-Fetch-Site": "cross-site"}, {"Sec-Fetch-Site": "same-site"},
                                     {"Origin": "http://attacker.example"}])  # fmt: skip
def test_requests_from_other_sites_are_refused(running, headers):
    for method, path in (("GET", "/step?action=0"), ("GET", "/settings?steps=3"), ("POST", "/upload")):
        reply, data = running.ask(method, path, body=b"x" if method == "POST" else None, headers=headers)
        assert reply.status == 403 and "other sites" in json.loads(data)["error"]
    assert running.ask("GET", "/", headers=headers)[0].status == 200  # the page itself may be linked to
    same = {"Sec-Fetch-Site": "same-origin", "Origin": f"http://127.0.0.1:{running.port}"}
    assert running.ask("GET", "/step?action=0", headers=same)[0].status == 200
    assert running.world.steps != 3


def test_a_failure_in_the_model_is_a_500_with_the_reason_and_the_server_plays_on(running):
    step = running.world.step

    def out_of_memory(action):
        raise RuntimeError("out of memory (as a GPU might say)")

    running.world.step = out_of_memory
    reply, data = running.ask("GET", "/step?action=1")
    assert reply.status == 500 and "out of memory" in json.loads(data)["error"]
    running.world.step = step
    assert running.ask("GET", "/step?action=1")[0].status == 200


def test_every_action_key_is_a_distinct_key_and_r_stays_reset():
    from genie.serve import KEYS

    assert "r" not in KEYS and len(set(KEYS)) == len(KEYS) == 20


def test_a_port_in_use_is_one_clear_error(running):
    with pytest.raises(ValueError, match=f"port {running.port} is in use"):
        PlayServer(running.world, running.prompt, port=running.port)


# --- the page in a real browser ---
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# Chromium's own connections (updates, sync, ...) are not wanted in a test
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip


def browser_page(playwright):
    browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
    return browser, browser.new_page()


SEEN = """() => {  // every frame number the page shows, and the longest queue, from now on
  window.seen = []; window.maxQueued = 0;
  new MutationObserver(() => seen.push(document.getElementById("n").textContent))
    .observe(document.getElementById("n"), {childList: true, characterData: true, subtree: true});
  new MutationObserver(() => { maxQueued = Math.max(maxQueued, +document.getElementById("queued").textContent); })
    .observe(document.getElementById("queued"), {childList: true, characterData: true, subtree: true});
}"""
REPEAT = """key => document.dispatchEvent(new KeyboardEvent("keydown", {key, code: "Digit" + key, repeat: true}))"""


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium here (Debian: apt-get install chromium); .ci/run installs it")
def test_the_page_plays_in_a_real_browser(running):
    sync_api = pytest.importorskip("playwright.sync_api", reason="no playwright (pip install playwright)")
    sync_api.expect.set_options(timeout=30_000)  # a loaded 2-core machine is slow
    step = running.world.step
    delay = {"s": 0.0}

    def slow_step(action):  # frames that take a while: to press keys and reset in the middle of one
        time.sleep(delay["s"])
        return step(action)

    running.world.step = slow_step
    errors = []
    with sync_api.sync_playwright() as p:
        browser, page = browser_page(p)
        try:
            page.on("console", lambda m: m.type == "error" and errors.append((m.text, m.location.get("url", ""))))
            page.on("pageerror", lambda e: errors.append((str(e), "")))
            page.goto(f"http://127.0.0.1:{running.port}/")
            page.wait_for_selector("#game", state="visible", timeout=30_000)
            count = page.locator("#n")
            sync_api.expect(count).to_have_text("1")
            for img in ("prompt", "frame"):  # both shown (the frame once the first reset has answered)
                page.wait_for_function(f"() => {{ const i = document.getElementById('{img}');"
                                       f" return i.src && i.complete && i.naturalWidth === {SIDE}; }}")  # fmt: skip
            assert page.eval_on_selector("#frame", "img => img.width") == SIDE * UPSCALE  # --upscale
            assert page.locator("#actions button").count() == ACTIONS
            assert page.locator("#starts img").count() == 2
            sync_api.expect(page.locator("#skip")).to_contain_text(f"{FRAME_SKIP} game frames")  # what a frame is

            page.click("#action0")  # a button adds a frame
            sync_api.expect(count).to_have_text("2")
            page.keyboard.press("2")  # and so does a key
            sync_api.expect(count).to_have_text("3")
            sync_api.expect(page.locator("#fps")).not_to_have_text("\u2013")
            page.wait_for_timeout(500)
            assert count.inner_text() == "3"  # a tap is one frame, not a stream

            page.evaluate(SEEN)
            delay["s"] = 1.0  # reset in the middle of a frame: back at the prompt, the late frame never shown
            page.keyboard.press("3")
            sync_api.expect(page.locator("#state")).to_have_text("generating")
            page.click("#reset")
            sync_api.expect(count).to_have_text("1")
            page.wait_for_timeout(1500)
            assert page.evaluate("seen") == ["1"] and page.locator("#state").inner_text() == "idle"

            delay["s"] = 0.4  # keys pressed while a frame generates are queued, not dropped
            for key in "123":
                page.keyboard.press(key)
            sync_api.expect(count).to_have_text("4")
            assert page.evaluate("maxQueued") >= 1
            delay["s"] = 0.0

            page.keyboard.down("1")  # a held key (the keyboard repeats it) streams frames until released
            page.evaluate(REPEAT, "1")
            page.wait_for_function("() => +document.getElementById('n').textContent >= 7")
            page.keyboard.up("1")
            sync_api.expect(page.locator("#state")).to_have_text("idle")
            settled = count.inner_text()
            page.wait_for_timeout(500)
            assert count.inner_text() == settled  # and stops

            box = page.locator("#action2").bounding_box()  # so does a held button
            page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
            page.mouse.down()
            page.wait_for_function(f"() => +document.getElementById('n').textContent >= {int(settled) + 3}")
            page.mouse.up()
            sync_api.expect(page.locator("#state")).to_have_text("idle")  # the frame in flight lands

            page.set_input_files("#upload", files=[{"name": "notes.txt", "mimeType": "text/plain",
                                                    "buffer": b"not an image"}])  # fmt: skip
            sync_api.expect(page.locator("#msg")).to_contain_text("notes.txt is not a readable image")
            before = int(count.inner_text())
            page.keyboard.press("1")  # the page plays on, and keys work at once after the upload
            sync_api.expect(count).to_have_text(str(before + 1))

            page.locator("#starts img").first.click()
            sync_api.expect(count).to_have_text("1")
            sync_api.expect(page.locator("#start")).to_have_text("start-0")
        finally:
            browser.close()
    # the refused upload's 400 is the one error the browser may log; nothing else
    assert [e for e in errors if not ("400" in e[0] and "/upload" in e[1])] == []
