"""Arguments that cannot work are refused before any work, with one error line naming the option,
and nothing is written."""

import pytest
import torch

import evaluate
import play
from genie import maskgit


def refused(main, argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "Traceback" not in "\n".join(err)
    return err[-1]


@pytest.mark.parametrize(
    "argv, says",
    [
        (["--temperature", "-1"], "--temperature must be >= 0"),
        (["--fps", "0"], "--fps must be positive"),
        (["--port", "70000"], "--port must be in 1..65535"),
        (["--upscale", "64"], "--upscale must be <= 16"),
        (["--interactive", "--batch"], "--interactive plays live from the page"),
        (["--interactive", "--num_frames", "5"], "it does not take --batch, --actions or --num_frames"),
        (["--steps", "0"], "--steps must be >= 1"),
        (["--output", "rollout.txt"], "must end in .gif or .mp4"),
    ],
)
def test_play_refuses_bad_arguments_before_loading_anything(argv, says, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    line = refused(play.main, argv, capsys)
    assert line.startswith("play.py: error:") and says in line
    assert list(tmp_path.iterdir()) == []


def test_play_refuses_an_output_under_a_regular_file(capsys, tmp_path):
    (tmp_path / "a_file").write_text("x")
    line = refused(play.main, ["--output", str(tmp_path / "a_file" / "out.gif")], capsys)
    assert "is a file, not a folder" in line


@pytest.mark.parametrize(
    "argv, says",
    [
        (["--clips", "0"], "--clips must be >= 1, got 0"),
        (["--clips", "-2"], "--clips must be >= 1, got -2"),
        (["--temperature", "-0.5"], "--temperature must be >= 0"),
        (["--probe_levels", "-1"], "--probe_levels must be >= 0"),
        (["--horizon", "0"], "--horizon must be >= 1"),
    ],
)
def test_evaluate_refuses_bad_arguments_naming_them(argv, says, capsys, tmp_path):
    out = tmp_path / "eval"
    line = refused(evaluate.main, ["--tokenizer_checkpoint", "res/tokenizer.ckpt", "--out", str(out), *argv], capsys)
    assert line.startswith("evaluate.py: error:") and says in line
    assert not out.exists()


def test_evaluate_refuses_a_garbage_i3d_file_before_evaluating(capsys, tmp_path):
    (tmp_path / "i3d.pt").write_bytes(b"\x00garbage, not a TorchScript archive")
    out = tmp_path / "eval"
    argv = ["--checkpoint", "res/genie.ckpt", "--tokenizer_checkpoint", "res/tokenizer.ckpt", "--root",
            str(tmp_path / "no_data"), "--i3d", str(tmp_path / "i3d.pt"), "--out", str(out)]  # fmt: skip
    assert evaluate.main(argv) == 2  # checked first: the missing data is not reached
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("evaluate.py: error: --i3d") and "not a TorchScript I3D" in err[0]
    assert not out.exists()


def test_evaluate_refuses_an_output_folder_that_is_a_file(capsys, tmp_path):
    (tmp_path / "report").write_text("x")
    line = refused(evaluate.main, ["--tokenizer_checkpoint", "x.ckpt", "--out", str(tmp_path / "report")], capsys)
    assert "is a file" in line


def test_the_decoder_refuses_a_negative_temperature():
    def logits_fn(frame, positions):
        return torch.zeros(*positions.shape, 5)

    with pytest.raises(ValueError, match="temperature must be >= 0"):
        maskgit.decode(logits_fn, 1, 4, mask_id=5, steps=2, temperature=-1.0)
    assert maskgit.decode(logits_fn, 1, 4, mask_id=5, steps=2, temperature=0.0).tokens.shape == (1, 4)


def test_a_16_bit_image_keeps_its_grey_levels(tmp_path):
    import numpy as np
    from PIL import Image

    from genie.media import load_image

    Image.fromarray(np.full((64, 64), 32768, dtype=np.uint16)).save(tmp_path / "grey16.png")
    assert Image.open(tmp_path / "grey16.png").mode.startswith("I;16")
    image = load_image(tmp_path / "grey16.png", (64, 64))  # mid-grey: 0 in [-1, 1], not white (1)
    assert image.shape == (1, 3, 64, 64) and image.abs().max() < 0.01


@pytest.mark.parametrize("side", [5000, 20000])  # over our limit; over Pillow's decompression-bomb limit
def test_huge_images_are_refused_before_they_are_decoded(tmp_path, side):
    from PIL import Image

    from genie.media import MediaError, load_image

    Image.new("1", (side, side)).save(tmp_path / "huge.png")  # a few kB on disk
    with pytest.raises(MediaError, match="pixels"):
        load_image(tmp_path / "huge.png", (64, 64))


class StillWorld:
    """Just enough of a `World` for the page server: every frame is grey."""

    num_actions, frame_shape, steps, frames, temperature = 3, (8, 8), 1, 0, 1.0

    def reset(self, image):
        self.frames = 1
        return torch.zeros(1, 3, 8, 8)

    def step(self, action):
        if not 0 <= action < self.num_actions:
            raise ValueError(f"no action {action}")
        self.frames += 1
        return torch.zeros(1, 3, 8, 8)


def test_the_page_server_refuses_other_hosts_and_methods_and_keeps_serving():
    import http.client
    import threading

    from genie.serve import PlayServer

    server = PlayServer(StillWorld(), torch.zeros(1, 3, 8, 8), port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]

    def ask(method: str, path: str, host: str) -> int:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request(method, path, headers={"Host": host})
        status = conn.getresponse().status
        conn.close()
        return status

    try:
        assert ask("GET", "/info", f"127.0.0.1:{port}") == 200
        assert ask("GET", "/info", f"localhost:{port}") == 200
        assert ask("GET", "/info", f"attacker.example:{port}") == 403  # DNS rebinding
        assert ask("GET", "/", "127.0.0.1.attacker.example") == 403
        assert ask("POST", "/step?action=0", f"127.0.0.1:{port}") == 405
        assert ask("DELETE", "/", f"127.0.0.1:{port}") == 405
        assert ask("GET", "/../../etc/passwd", f"127.0.0.1:{port}") == 404
        assert ask("GET", "/info", f"127.0.0.1:{port}") == 200  # still serving
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(
    "script, config, says",
    [
        ("genie.py", "model:\n  lrr: 1.0e-3\n", "does not accept option 'model.lrr'"),
        ("genie.py", "model:\n  lr: [1\n", "Problems parsing config"),
        ("tokenizer.py", None, "File does not exist"),
    ],
)
def test_config_mistakes_are_one_line_not_the_usage_text(script, config, says, tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    overlay = tmp_path / "overlay.yaml"
    if config is not None:
        overlay.write_text(config)
    preset = "genie.tiny.yaml" if script == "genie.py" else "tokenize.tiny.yaml"
    run = subprocess.run([sys.executable, script, "fit", "-c", f"config/{preset}", "-c", str(overlay)],
                         cwd=repo, capture_output=True, text=True, timeout=300)  # fmt: skip
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert run.returncode == 2
    assert len(lines) == 1 and lines[0].startswith(f"{script}: error:") and says in lines[0], run.stderr[-2000:]


@pytest.mark.parametrize(
    "extra, says",
    [
        (["--data.num_frames", "600"], "no life is 600 frames long"),
        (["--trainer.max_steps", "-5"], "`max_steps` must be a non-negative integer"),
        (["--model.tokenizer_ckpt_path", "README.md"], "README.md is not a readable checkpoint"),
        (["--data.root", "EMPTY"], "no packed split"),
    ],
)
def test_training_input_mistakes_are_one_line_and_leave_no_run_folder(extra, says, tiny_root, tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    (tmp_path / "empty").mkdir()
    extra = [str(tmp_path / "empty") if a == "EMPTY" else a for a in extra]
    run_dir = tmp_path / "run"
    argv = [sys.executable, "genie.py", "fit", "-c", "config/genie.tiny.yaml", "--data.root", str(tiny_root),
            "--model.tokenizer_ckpt_path", "res/tokenizer.ckpt", "--trainer.default_root_dir", str(run_dir), *extra]
    run = subprocess.run(argv, cwd=repo, capture_output=True, text=True, timeout=300)
    assert run.returncode != 0 and "Traceback" not in run.stderr, run.stderr[-2000:]
    assert run.stderr.strip().splitlines()[-1].startswith("genie.py: error:") and says in run.stderr
    assert not run_dir.exists()


@pytest.mark.parametrize(
    "script, ckpt, says",
    [
        ("tokenizer.py", "STAGE2", "holds the dynamics/lam network(s) of the other stage"),
        ("genie.py", "STAGE1", "holds the tokenizer network(s) of the other stage"),
        ("tokenizer.py", "res/genie.ckpt", "holds no training state"),
        ("tokenizer.py", "TRUNCATED", "is not a readable checkpoint"),
        ("genie.py", "README.md", "is not a readable checkpoint"),
        ("genie.py", "nowhere.ckpt", "no checkpoint at nowhere.ckpt"),
    ],
)
def test_a_wrong_ckpt_path_is_named_for_what_it_is(script, ckpt, says, tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    made = {  # training checkpoints of each stage, as far as the check reads them
        "STAGE2": {"pytorch-lightning_version": "2", "state_dict": {}, "networks": {"lam": {}, "dynamics": {}}},
        "STAGE1": {"pytorch-lightning_version": "2", "state_dict": {}, "networks": {"tokenizer": {}}},
    }
    if ckpt in made:
        torch.save(made[ckpt], tmp_path / "x.ckpt")
        ckpt = str(tmp_path / "x.ckpt")
    elif ckpt == "TRUNCATED":
        (tmp_path / "x.ckpt").write_bytes((repo / "res" / "tokenizer.ckpt").read_bytes()[:5000])
        ckpt = str(tmp_path / "x.ckpt")
    preset = "genie.tiny.yaml" if script == "genie.py" else "tokenize.tiny.yaml"
    argv = [sys.executable, script, "test", "-c", f"config/{preset}", "--ckpt_path", ckpt,
            "--trainer.default_root_dir", str(tmp_path / "run")]  # fmt: skip
    run = subprocess.run(argv, cwd=repo, capture_output=True, text=True, timeout=300)
    assert run.returncode != 0 and "Traceback" not in run.stderr, run.stderr[-2000:]
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith(f"{script}: error:") and says in last, last
    assert not (tmp_path / "run").exists()
