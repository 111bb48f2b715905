"""play.py, the World behind it, the interactive server and evaluate.py.

Most tests use a tiny synthetic world whose rule is known: 8x8 frames, a tokenizer that maps
them to 2x2 tokens of 4 codes, and a dynamics model trained (here, in seconds) on
x_{t+1} = (x_t + a_t) mod 4 for 3 actions, so that different actions must give different frames.
"""

import io
import json
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import evaluate as evaluate_cli
import play as play_cli
from genie.action import LatentAction
from genie.blocks import FrameStream
from genie.checkpoints import CheckpointError, store_network
from genie.dynamics import DynamicsModel
from genie.evaluation import frechet_distance, fvd
from genie.serve import PlayServer
from genie.tokenizer import VideoTokenizer
from genie.world import World, load_world
from helpers.stage2 import REPO, genie_args, genie_cli, tokenizer_checkpoint
from helpers.worlds import ACTIONS, LAM_ARGS, SIDE, TOK_ARGS, VOCAB, build_synthetic, save_genie


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    return build_synthetic(tmp_path_factory.mktemp("world"))


def _world(synthetic, **kw) -> World:
    return load_world(str(synthetic["genie"]), str(synthetic["tokenizer"]), temperature=0.0, **kw)


def _prompt(synthetic) -> torch.Tensor:
    from genie.media import load_image

    return load_image(synthetic["image"], (SIDE, SIDE))


# --- the world ---
def test_each_action_moves_the_world_by_its_rule_and_frames_differ(synthetic):
    world = _world(synthetic)
    assert world.frame_shape == (SIDE, SIDE) and world.num_actions == ACTIONS
    start = world.reset(_prompt(synthetic))
    assert start.shape == (1, 3, SIDE, SIDE)
    x0 = world.tokens[:, 0].clone()
    frames = []
    for a in range(ACTIONS):
        world.reset(_prompt(synthetic))
        frames.append(world.step(a))
        assert torch.equal(world.tokens[:, 1], (x0 + a) % VOCAB)  # the learned rule, greedily decoded
    assert all(not torch.allclose(frames[i], frames[j]) for i in range(ACTIONS) for j in range(i))


def test_world_matches_generate_and_full_decode_then_slides_its_window(synthetic):
    world = _world(synthetic)
    image = _prompt(synthetic)
    world.reset(image)
    acts = [1, 2, 0, 1, 2, 2, 1]
    frames = [world.step(a) for a in acts[:3]]  # 4 frames: the window (max_frames = 4) is full
    tokens0 = world.tokenizer.tokenize(image[:, :, None]).indices
    ref = world.dynamics.generate(tokens0, torch.tensor([acts[:3]]), temperature=0.0, num_frames=3)
    assert torch.equal(world.tokens, ref)
    decoded = world.tokenizer.decode(ref).clamp(-1, 1)
    torch.testing.assert_close(torch.stack(frames, 2), decoded[:, :, 1:], atol=1e-5, rtol=0)  # streamed decode
    for a in acts[3:]:  # beyond the window: the context drops to its last `keep` frames when full
        ctx, between = world.tokens, world.actions
        if ctx.shape[1] == world.window:
            ctx, between = ctx[:, -world.keep :], between[:, between.shape[1] - world.keep + 1 :]
        expected = world.dynamics.generate(ctx, torch.cat([between, torch.tensor([[a]])], 1), temperature=0.0)
        world.step(a)
        assert torch.equal(world.tokens, expected) and world.tokens.shape[1] <= world.window
    assert world.frames == 1 + len(acts)


def test_world_rendering_expected_codes_decodes_generate_expected_and_keeps_the_tokens(synthetic):
    image, acts = _prompt(synthetic), [1, 2, 0]
    plain, world = _world(synthetic), _world(synthetic, render="expected")
    plain.reset(image)
    world.reset(image)
    frames = [world.step(a) for a in acts]
    [plain.step(a) for a in acts]
    assert torch.equal(world.tokens, plain.tokens)  # the context is the sampled tokens either way
    tokens0 = world.tokenizer.tokenize(image[:, :, None]).indices
    ref = world.dynamics.generate_expected(tokens0, torch.tensor([acts]), world.tokenizer.code_table(),
                                           temperature=0.0, num_frames=3)  # fmt: skip
    codes = torch.cat([world.tokenizer.quantizer.indices_to_codes(tokens0), ref.expected], dim=2)
    decoded = world.tokenizer.decode(codes).clamp(-1, 1)
    torch.testing.assert_close(torch.stack(frames, 2), decoded[:, :, 1:], atol=1e-5, rtol=0)  # streamed decode
    with pytest.raises(ValueError, match="render"):
        _world(synthetic, render="mean")


def test_frame_stream_decodes_like_the_whole_video():
    torch.manual_seed(0)
    tok = VideoTokenizer(**TOK_ARGS).eval()
    codes = tok.quantizer.proj_out(tok.quantizer.indices_to_codes(torch.randint(0, VOCAB, (2, 5, 2, 2))))
    with torch.no_grad():
        full = tok.decoder(codes)
        stream = FrameStream(tok.decoder)
        parts = [stream(codes[:, :, a:b]) for a, b in ((0, 1), (1, 3), (3, 4), (4, 5))]
    torch.testing.assert_close(torch.cat(parts, 2), full, atol=1e-5, rtol=0)


def _eight_code_tokenizer(path: Path) -> Path:
    """A tokenizer checkpoint of 8 codes (3 LFQ bits), not the synthetic world's 4."""
    enc = [*TOK_ARGS["enc_desc"][:3], ["proj_out", {"in_channels": 8, "out_channels": 3, "num_groups": 4}]]
    dec = [["causal", {"in_channels": 3, "out_channels": 8}], *TOK_ARGS["dec_desc"][1:]]
    other = VideoTokenizer(**{**TOK_ARGS, "d_codebook": 3, "enc_desc": enc, "dec_desc": dec})
    assert other.codebook_size == 8
    ckpt = {"state_dict": {f"tokenizer.{k}": v for k, v in other.state_dict().items()}}
    store_network(ckpt, "tokenizer", other.config)
    torch.save(ckpt, path)
    return path


def test_a_tokenizer_of_another_vocabulary_is_refused(synthetic, tmp_path):
    path = _eight_code_tokenizer(tmp_path / "other.ckpt")
    with pytest.raises(CheckpointError, match="trained on a tokenizer with 4 codes.*has 8"):
        load_world(str(synthetic["genie"]), str(path))


@pytest.mark.parametrize("recorded", [None, 8])
def test_a_dynamics_model_of_another_vocabulary_is_refused_whatever_the_checkpoint_records(tmp_path, recorded):
    """The dynamics network itself predicts 4 token ids: with an 8-code tokenizer, loading fails
    with both sizes named, whether the checkpoint records no tokenizer or (wrongly) an 8-code one."""
    tokenizer = _eight_code_tokenizer(tmp_path / "tokenizer.ckpt")
    torch.manual_seed(0)
    desc = (("space-time_attn", {"n_rep": 1, "n_embd": 32, "n_head": 2, "d_head": 16}),)
    dynamics = DynamicsModel(VOCAB, ACTIONS, desc=desc, embed_dim=32, max_frames=4, max_side=2)
    genie = save_genie(tmp_path / "genie.ckpt", LatentAction(**LAM_ARGS), dynamics, tokenizer, recorded)
    with pytest.raises(CheckpointError, match="predicts 4 token ids but the tokenizer has 8 codes"):
        load_world(str(genie), str(tokenizer))


# --- play.py ---
def _gif(path: Path) -> list[np.ndarray]:
    """The GIF's frames at their display times (Pillow stores a repeated frame once, with the
    summed duration, so frames are repeated back by duration)."""
    with Image.open(path) as img:
        frames, durations = [], []
        for i in range(img.n_frames):
            img.seek(i)
            frames.append(np.asarray(img.convert("RGB")))
            durations.append(img.info["duration"])
    unit = 100  # ms: play.py's default 10 frames/s
    return [f for f, d in zip(frames, durations) for _ in range(round(d / unit))]


def test_play_writes_a_gif_of_the_right_length_and_size(synthetic, tmp_path):
    out = tmp_path / "out.gif"
    args = ["--checkpoint", str(synthetic["genie"]), "--tokenizer_checkpoint", str(synthetic["tokenizer"]),
            "--image", str(synthetic["image"]), "--output", str(out), "--actions", "0,1,2", "--num_frames", "7",
            "--upscale", "3", "--steps", "4"]  # fmt: skip
    assert play_cli.main(args) == 0
    frames = _gif(out)
    assert len(frames) == 8 and frames[0].shape == (SIDE * 3, SIDE * 3, 3)  # prompt + 7 generated


def test_play_batch_renders_one_rollout_per_action_side_by_side(synthetic, tmp_path):
    out = tmp_path / "batch.gif"
    args = ["--checkpoint", str(synthetic["genie"]), "--tokenizer_checkpoint", str(synthetic["tokenizer"]),
            "--image", str(synthetic["image"]), "--output", str(out), "--batch", "--num_frames", "3",
            "--upscale", "1", "--temperature", "0"]  # fmt: skip
    assert play_cli.main(args) == 0
    frames = _gif(out)
    assert len(frames) == 4 and frames[0].shape == (SIDE, ACTIONS * SIDE + (ACTIONS - 1) * 2, 3)
    panels = [frames[1][:, i * (SIDE + 2) : i * (SIDE + 2) + SIDE].astype(int) for i in range(ACTIONS)]
    assert all(np.abs(panels[i] - panels[j]).max() > 0 for i in range(ACTIONS) for j in range(i))


@pytest.mark.parametrize(
    "change, message",
    [
        ({"--image": "missing.png"}, "no image at"),
        ({"--image": "notes.txt"}, "is not a readable image"),
        ({"--checkpoint": "missing.ckpt"}, "no checkpoint at"),
        ({"--checkpoint": "notes.txt"}, "is not a readable checkpoint"),
        ({"--checkpoint": "@tokenizer"}, "holds no 'dynamics' network"),
        ({"--actions": "0,7"}, "latent actions 0..2"),
        ({"--actions": "left"}, "comma-separated integers"),
    ],  # an output play.py cannot write is refused while parsing: tests/test_bad_input.py
)
def test_bad_input_is_one_error_line_and_a_nonzero_exit(synthetic, tmp_path, capsys, change, message):
    (tmp_path / "notes.txt").write_text("not an image, not a checkpoint")
    args = {"--checkpoint": str(synthetic["genie"]), "--tokenizer_checkpoint": str(synthetic["tokenizer"]),
            "--image": str(synthetic["image"]), "--output": str(tmp_path / "out.gif"), "--num_frames": "2"}  # fmt: skip
    for k, v in change.items():  # file names are made paths in tmp_path; --actions is taken as it is
        args[k] = v if k == "--actions" else str(synthetic["tokenizer"]) if v == "@tokenizer" else str(tmp_path / v)
    assert play_cli.main([x for kv in args.items() for x in kv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("play.py: error: ") and message in err[0]
    assert not (tmp_path / "out.gif").exists()


def test_resized_image_warns_once_and_no_checkpoint_says_what_to_pass(synthetic, tmp_path):
    big = tmp_path / "big.jpg"
    Image.new("L", (40, 30), 128).save(big)  # other size, grey-scale, JPEG
    cmd = [sys.executable, str(REPO / "play.py"), "--checkpoint", str(synthetic["genie"]), "--tokenizer_checkpoint",
           str(synthetic["tokenizer"]), "--image", str(big), "--output", str(tmp_path / "o.gif"),
           "--num_frames", "1"]  # fmt: skip
    run = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    warnings = [line for line in run.stderr.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "resizing to 8x8" in warnings[0]


# --- interactive ---
def test_interactive_server_answers_key_presses_with_frames_that_follow_the_action(synthetic):
    world = _world(synthetic)
    ran_on = []  # every request's model work runs on the one model thread, not the request's own
    for name in ("step", "reset"):
        method = getattr(world, name)
        setattr(world, name, lambda *a, _m=method: ran_on.append(threading.get_ident()) or _m(*a))
    server = PlayServer(world, _prompt(synthetic), port=0)
    stop = threading.Event()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    model_thread = threading.Thread(target=lambda: (server.warm_up(), server.work_forever(stop)), daemon=True)
    model_thread.start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        assert server.ready.wait(60)
        page = urllib.request.urlopen(base + "/").read().decode()
        assert "keydown" in page and "frames/s" in page
        info = json.loads(urllib.request.urlopen(base + "/info").read())
        assert [a["key"] for a in info["actions"]] == list("123")
        frames = {}
        for a in range(ACTIONS):
            urllib.request.urlopen(base + "/reset").read()
            reply = urllib.request.urlopen(f"{base}/step?action={a}")
            assert reply.headers["X-Frame"] == "2" and float(reply.headers["X-Step-Ms"]) > 0
            frames[a] = np.asarray(Image.open(io.BytesIO(reply.read())).convert("RGB")).astype(int)
            assert frames[a].shape == (SIDE, SIDE, 3)
        assert all(np.abs(frames[i] - frames[j]).max() > 0 for i in range(ACTIONS) for j in range(i))
        with pytest.raises(urllib.error.HTTPError) as bad:
            urllib.request.urlopen(f"{base}/step?action={ACTIONS}")
        assert bad.value.code == 400
        assert len(ran_on) > 2 * ACTIONS and set(ran_on) == {model_thread.ident}
    finally:
        stop.set()
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(
    "flags, compiled",
    [([], False), (["--interactive"], True), (["--interactive", "--no-compile"], False), (["--compile"], True)],
)
def test_interactive_play_compiles_its_rounds_by_default_and_a_file_does_not(flags, compiled):
    assert play_cli.parse_args(flags).compile is compiled


def test_serve_compiles_before_the_first_key_press_and_plays_on_if_compiling_fails(synthetic, monkeypatch, capsys):
    from genie import serve as serve_module

    world = _world(synthetic)
    calls = []

    def broken(*args):  # as torch.compile fails with no C++ compiler: at the first round
        calls.append(1)
        raise torch._inductor.exc.InvalidCxxCompiler()  # what inductor raises then

    world.dynamics._compiled_round = broken
    steps = []
    monkeypatch.setattr(serve_module.PlayServer, "work_forever", lambda self: steps.append(world.frames))
    assert serve_module.serve(world, _prompt(synthetic), port=0) == 0
    out = capsys.readouterr().out
    assert "compiling the MaskGIT round" in out and "(compiling failed, uncompiled)" in out
    assert calls == [1] and steps == [1]  # warmed up, then back at the prompt when serving starts


# --- evaluation ---
def test_frechet_distance_known_cases():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(4000, 3, generator=g)
    assert abs(frechet_distance(a, a)) < 1e-6
    shift = torch.tensor([1.0, 2.0, 0.0])
    assert abs(frechet_distance(a, a + shift) - 5.0) < 1e-6  # same covariance: |mu_a - mu_b|^2
    assert abs(frechet_distance(a, 2 * a) - 1.0 * 3) < 0.15  # covariance I vs 4I: tr(I + 4I - 2*2I) = 3


class _FakeI3D(torch.nn.Module):
    """Stands in for a TorchScript I3D: same call signature, features = per-clip channel means."""

    def forward(self, x: torch.Tensor, rescale: bool = False, resize: bool = True, return_features: bool = True):
        return x.mean(dim=(3, 4)).flatten(1)


def test_fvd_is_zero_for_identical_sets_and_positive_otherwise(tmp_path):
    g = torch.Generator().manual_seed(0)
    real = torch.rand(16, 3, 4, 8, 8, generator=g) * 2 - 1
    detector = torch.jit.script(_FakeI3D())
    assert abs(fvd(detector, real, real)) < 1e-6
    assert fvd(detector, real, real * 0.5) > 0.01


# --- end to end on checkpoints of the tiny configs ---
def test_play_and_evaluate_checkpoints_trained_by_the_tiny_configs(tmp_path, tiny_root, monkeypatch):
    from genie.data import VideoDataModule

    monkeypatch.chdir(tmp_path)
    tok = tokenizer_checkpoint(tmp_path / "tokenizer.ckpt", "tokenize.tiny.yaml")
    # the preset's own 6-frame clips (not SMALL's 4): the models' max_frames follow them, so rollouts
    # reach horizon 5 and Delta_t PSNR at t = 4 is measured
    genie_cli.main(genie_args("fit", "genie.tiny.yaml", tiny_root, tok, tmp_path, "--trainer.max_steps", "2",
                              "--data.num_frames", "6"))  # fmt: skip
    last = tmp_path / "checkpoints" / "last.ckpt"
    frame = next(iter(VideoDataModule(tiny_root, num_frames=1, batch_size=1, num_workers=0).test_dataloader()))
    Image.fromarray(frame.frames[0, 0].numpy()).save(tmp_path / "coinrun.png")  # a real held-out frame
    common = ["--checkpoint", str(last), "--tokenizer_checkpoint", str(tok)]
    out = tmp_path / "rollout.gif"
    play = ["--image", str(tmp_path / "coinrun.png"), "--output", str(out), "--num_frames", "4", "--steps", "2",
            "--upscale", "2"]  # fmt: skip
    assert play_cli.main(common + play) == 0
    frames = _gif(out)
    assert len(frames) == 5 and frames[0].shape == (128, 128, 3)

    ev = ["--root", str(tiny_root), "--clips", "2", "--batch_size", "2", "--steps", "2", "--out", str(tmp_path / "ev"),
          "--probe_frames", "4", "--probe_clips", "4", "--classifier_steps", "3"]  # fmt: skip
    assert evaluate_cli.main(common + ev) == 0
    report = json.loads((tmp_path / "ev" / "report.json").read_text())
    control = report["control"]  # each action held from the 2 test levels' starts, in the game and the model
    assert control["levels"] == 2 and control["frames"] == 4 and report["action_source"] == "latent"
    assert len(control["game"]["dx"]) == 15 and len(control["model"]["dy"]) == 6
    assert control["game"]["spread_x"] > 0.1  # holding RIGHT moves the scene in the game
    assert 0 <= report["lam"]["nmi_effective_groups"] <= 1
    probe = report["probe"]  # latent action -> effective group, against an inverse-dynamics classifier
    assert probe["train_transitions"] == 4 * 5 and probe["classifier_steps"] == 3
    assert 0 <= probe["latent_action"]["balanced_accuracy"] <= 1 and "balanced_accuracy" in probe["inverse_dynamics"]
    assert report["clips"] == 2 and report["setup"]["horizon"] == 5  # max_frames 6 in the tiny config
    assert len(report["dynamics"]["rollout_psnr_by_horizon"]) == 5
    assert set(report["delta_psnr_t4"]) == {"genie", "genie_redux", "definition"}
    assert 0 <= report["lam"]["nmi_true_actions"] <= 1 and report["fvd"]["computed"] is False
    assert 0 < report["tokenizer"]["codebook_usage"] <= 1
    for name in ("confusion.png", "rollout_psnr.png"):
        assert Image.open(tmp_path / "ev" / name).size[0] > 100
    samples = _gif(tmp_path / "ev" / "samples.gif")  # 2 clips stacked, each real | reconstruction | rollout
    assert samples[0].shape == (2 * 64 * 3, (3 * 64 + 2 * 2) * 3, 3)


def test_the_bundled_model_plays_with_no_arguments(tmp_path):
    out = tmp_path / "rollout.gif"
    assert play_cli.main(["--output", str(out), "--num_frames", "2", "--steps", "2"]) == 0
    frames = _gif(out)
    assert len(frames) == 3 and frames[0].shape == (256, 256, 3)  # 64x64 frames, upscale 4


def test_evaluate_the_tokenizer_alone(tmp_path, tiny_root):
    tok = tokenizer_checkpoint(tmp_path / "tokenizer.ckpt", "tokenize.tiny.yaml")
    out = tmp_path / "tok"
    args = ["--tokenizer_checkpoint", str(tok), "--root", str(tiny_root), "--clips", "3", "--clip_frames", "2",
            "--batch_size", "2", "--out", str(out)]  # fmt: skip
    assert evaluate_cli.main(args) == 0
    report = json.loads((out / "tokenizer_report.json").read_text())
    assert report["frames"] == 6 and report["codebook_size"] == 1000 and 0 < report["codebook_usage"] <= 1
    pools = [report[f"avg_pool_{k}x{k}_psnr"] for k in (2, 4, 8)]
    assert pools[0] > pools[1] > pools[2] > 10  # coarser averaging loses more of a real frame
    assert Image.open(out / "tokenizer_grid.png").size == (3 * 3 * 64, 3 * 2 * 64)  # 3 frames; real over rec
    assert evaluate_cli.main(["--tokenizer_checkpoint", str(tmp_path / "missing.ckpt"), "--out", str(out)]) == 2


def test_average_pooling_baseline_keeps_flat_frames_and_averages_detail_away():
    from genie.evaluation import pooled

    flat = torch.full((1, 3, 2, 16, 16), 0.3)
    assert torch.allclose(pooled(flat, 4), flat)
    i = torch.arange(16)
    checker = ((i[:, None] + i[None, :]) % 2 * 2 - 1).float().expand(1, 3, 2, 16, 16)  # one-pixel detail
    assert pooled(checker, 2).abs().max() < 1e-6
