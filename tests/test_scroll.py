"""The scene's scroll: whole-pixel shifts (`genie.motion.move`, `closest_shift`), the tokenizer's
moved frames (`genie.scroll.Scroller`) and the dynamics model that predicts a shift first
(`DynamicsModel(scroll=R)`)."""

from pathlib import Path

import pytest
import torch
from einops import rearrange

from genie.dynamics import DynamicsModel
from genie.media import load_image
from genie.motion import closest_shift, move
from genie.scroll import Scroller, greedy_shift
from genie.tokenizer import VideoTokenizer
from genie.world import World
from helpers.generation import generate_every_way

RES = Path(__file__).resolve().parents[1] / "res"
DESC = (("space-time_attn", {"n_rep": 1, "n_embd": 32, "n_head": 2, "d_head": 16}),)


@pytest.fixture(scope="module")
def tokenizer() -> VideoTokenizer:
    return VideoTokenizer.from_checkpoint(str(RES / "tokenizer.ckpt")).eval()


@pytest.fixture(scope="module")
def frame() -> torch.Tensor:
    """A CoinRun frame `(1 c H W)` in [-1, 1]."""
    return load_image(RES / "example.png", (64, 64))


def scroll_model(tokenizer: VideoTokenizer, seed: int = 0, **kw) -> DynamicsModel:
    torch.manual_seed(seed)
    model = DynamicsModel(tokenizer.codebook_size, 3, max_frames=4, desc=DESC, embed_dim=32, max_side=16,
                          scroll=4, copy_gate=True, **kw)  # fmt: skip
    return model.attach(tokenizer)


def hesitant_scroll_model(tokenizer: VideoTokenizer) -> DynamicsModel:
    """An untrained gated scroll model (eval mode) whose shift head says, whatever the input: dx 0
    (40 %), +3 or +4 (30 % each), dy -1. Its most likely shift is (0, -1), its mean (2.1, -1)."""
    model = scroll_model(tokenizer).eval()
    last = model.shift_head[-1]
    torch.nn.init.zeros_(last.weight)
    probs = torch.full((2, 9), 1e-6)
    probs[0, 4], probs[0, 4 + 3], probs[0, 4 + 4], probs[1, 4 - 1] = 0.4, 0.3, 0.3, 1.0
    with torch.no_grad():
        last.bias.copy_(probs.log().flatten())
    return model


def test_move_shifts_each_frame_by_its_own_shift_and_repeats_the_edges():
    frames = torch.arange(2 * 25, dtype=torch.float32).reshape(2, 1, 5, 5)
    moved = move(frames, torch.tensor([[1, 0], [0, -2]]))
    a, b = frames[0, 0], frames[1, 0]
    assert torch.equal(moved[0, 0], torch.cat([a[:, :1], a[:, :-1]], dim=1))  # right by 1, column 0 repeated
    assert torch.equal(moved[1, 0], torch.cat([b[2:], b[-1:], b[-1:]], dim=0))  # up by 2, last row repeated


def test_closest_shift_is_the_best_of_every_shift_tried_one_by_one():
    torch.manual_seed(0)
    smooth = torch.nn.functional.avg_pool2d(torch.rand(6, 3, 40, 40), 9, 1)  # (6 3 32 32)
    true = torch.tensor([[2, -1], [-3, 0], [0, 0], [4, 4], [-4, 1], [0, 0]])
    after = move(smooth, true)
    after[5] = torch.rand(3, 32, 32)  # no shift explains this one
    found = closest_shift(smooth, after, max_shift=4)
    assert torch.equal(found[:5], true[:5])
    span = range(-4, 5)  # every shift, scored directly
    errors = torch.stack([(move(smooth, torch.tensor([[dx, dy]] * 6)).mean(1) - after.mean(1)).square().mean((1, 2))
                          for dy in span for dx in span], dim=1)  # fmt: skip
    best = errors.argmin(1)
    assert found[5].tolist() == [best[5] % 9 - 4, best[5] // 9 - 4]
    still = closest_shift(smooth[:1], smooth[:1].clone(), max_shift=4)
    assert still.tolist() == [[0, 0]]
    far = closest_shift(smooth[:1], move(smooth[:1], torch.tensor([[7, 0]])), max_shift=2)
    assert far.abs().max() <= 2  # never outside the range


def test_the_teacher_finds_a_real_frame_s_scroll_through_the_tokenizer(tokenizer, frame):
    shifts = torch.tensor([[3, 0], [0, -2]])
    clip = [frame]
    for s in shifts:
        clip.append(move(clip[-1], s[None]))
    tokens = tokenizer.tokenize(rearrange(torch.cat(clip), "t c h w -> 1 c t h w")).indices  # (1 3 h w)
    scroller = Scroller(tokenizer, max_shift=4)
    scrolled = scroller.teacher(tokens)
    assert torch.equal(scrolled.shifts[0], shifts)
    assert torch.equal(scrolled.moved[:, 0], tokens[:, 0])  # frame 0: nothing moved into it
    decoded = scroller.pixels(tokens)
    for t in (1, 2):
        again = scroller.move(decoded[:, t - 1], shifts[t - 1][None])
        assert torch.equal(scrolled.moved[:, t], again)
    # moving the frame helps: the moved tokens agree with the next frame's far more often than the
    # unmoved ones (about 31 % against 5 % here; not all, as tokenizing a decoded frame again is
    # not exactly tokenizing the original)
    agree = (scrolled.moved[:, 1] == tokens[:, 1]).float().mean()
    assert agree > (tokens[:, 0] == tokens[:, 1]).float().mean() + 0.15


def test_moved_frames_are_the_real_frames_moved_and_a_still_frame_keeps_its_own_tokens(tokenizer, frame):
    clip = torch.cat([frame, frame, move(frame, torch.tensor([[-5, 0]]))])  # still, then a scroll
    video = rearrange(clip, "t c h w -> 1 c t h w")
    tokens = tokenizer.tokenize(video).indices  # (1 3 h w)
    scroller = Scroller(tokenizer, max_shift=8)
    real = scroller.teacher(tokens, rearrange(clip, "t c h w -> 1 t c h w"))
    assert real.shifts[0].tolist() == [[0, 0], [-5, 0]]
    assert torch.equal(real.moved[:, 1], tokens[:, 0])  # not moved: its own tokens
    assert torch.equal(real.moved[:, 2], tokens[:, 2])  # the real frame moved is the next real frame
    decoded = scroller.teacher(tokens)  # from the tokens alone, as a rollout has them
    assert torch.equal(decoded.moved[:, 1], tokens[:, 0])  # still: its own tokens, not re-tokenized
    assert not torch.equal(decoded.moved[:, 2], tokens[:, 2])  # moved: decoded, so not exactly


def test_a_scroll_model_without_its_tokenizer_says_so():
    model = DynamicsModel(1000, 3, max_frames=4, desc=DESC, embed_dim=32, max_side=16, scroll=4)
    with pytest.raises(RuntimeError, match="attach"):
        model.compute_losses(torch.randint(0, 1000, (1, 2, 16, 16)), torch.zeros(1, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="scroll"):
        DynamicsModel(1000, 3, scroll=-1)


def test_an_untrained_gated_scroll_model_renders_the_mean_shift_it_predicts(tokenizer, frame):
    model = hesitant_scroll_model(tokenizer)
    tokens = tokenizer.tokenize(rearrange(frame, "b c h w -> b c 1 h w")).indices
    acts = torch.zeros(1, 3, dtype=torch.long)
    frames = generate_every_way(model, tokens, acts, num_frames=2)
    scroller = model.scroller
    for t in (1, 2):  # each new frame is the one before moved by the mean shift, (2.1, -1) rounded, not
        # by the most likely one, (0, -1); tokenized again, and the gate copies it
        moved = scroller.move(scroller.pixels(frames[:, t - 1 : t])[:, 0], torch.tensor([[2, -1]]))
        assert torch.equal(frames[:, t], moved)


def test_a_scroll_model_learns_which_action_scrolls_which_way_and_holding_it_moves_the_scene(tokenizer, frame):
    steps = {0: (2, 0), 1: (-2, 0), 2: (0, 0)}  # action -> the scene's shift
    torch.manual_seed(0)
    acts = torch.randint(0, 3, (8, 3))
    clips = []
    for row in acts:
        clip = [frame]
        for a in row[:2]:
            clip.append(move(clip[-1], torch.tensor([steps[int(a)]])))
        clips.append(torch.cat(clip))
    video = rearrange(torch.stack(clips), "b t c h w -> b c t h w")
    tokens = tokenizer.tokenize(video).indices  # (8 3 h w)
    model = scroll_model(tokenizer, mask_rate=(0.0, 1.0), mask_per_frame=True)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    first = None
    for _ in range(60):
        out = model.compute_losses(tokens, acts, video)
        first = out.shift_loss if first is None else first
        opt.zero_grad()
        out.loss.backward()
        opt.step()
    assert out.shift_accuracy > 0.95 and out.shift_loss < first / 5
    model.eval()
    start = tokens[:1, :1]
    for action, (dx, dy) in steps.items():  # hold each action: the scene moves its way, step after step
        held = torch.full((1, 3), action)
        frames = model.generate(start, held, steps=4, temperature=0.0, num_frames=2)
        shifts = model.scroller.shifts(model.scroller.pixels(frames))[0]  # (2 2)
        assert shifts.tolist() == [[dx, dy], [dx, dy]]


def test_render_shift_script_measures_the_shift_an_untrained_gated_model_copies(tokenizer, frame):
    """scripts/render_shift.py: with the shift forced, an untrained gated model (which copies the
    moved frame) renders exactly it, and the model's own shift head is back afterwards."""
    from genie.world import World
    from helpers.stage2 import load_script

    rendered_shifts = load_script("scripts/render_shift.py", "render_shift_script").rendered_shifts
    world = World(tokenizer, scroll_model(tokenizer), temperature=0.0)
    images = torch.cat([frame, move(frame, torch.tensor([[3, 2]]))])
    for shift in ((0, 0), (-4, 0), (2, 3)):
        assert rendered_shifts(world, images, shift).tolist() == [list(shift)] * 2
    assert "_scrolled_frame" not in vars(world.dynamics)


def scrolling_clips(frame: torch.Tensor) -> list:
    """One batch of 2 clips of 3 frames: `frame (1 c H W)` scrolled by (2, -1) at every step."""
    from genie.data import Clip

    frames = [frame]
    for _ in range(2):
        frames.append(move(frames[-1], torch.tensor([[2, -1]])))
    video = rearrange(torch.cat(frames), "t c h w -> 1 c t h w").expand(2, -1, -1, -1, -1)
    return [Clip(video, torch.zeros(2, 3, dtype=torch.long))]


def test_shift_oracle_scores_the_mean_and_the_most_likely_predicted_shift(tokenizer, frame):
    """scripts/shift_oracle.py --checkpoint: a head whose most likely shift is (0, -1) and whose mean
    is (2, -1), on clips that scroll by (2, -1) at every step: the mean is right on both axes, the
    most likely value only on dy, and the frame moved by the mean is the oracle's."""
    from helpers.stage2 import load_script

    oracle = load_script("scripts/shift_oracle.py", "shift_oracle_predicted")
    model = hesitant_scroll_model(tokenizer)
    clips = scrolling_clips(frame)
    scored = []

    def score(guess: torch.Tensor) -> float:  # the moved frames, (4 c H W): 2 clips x 2 pairs
        scored.append(guess)
        return len(scored)

    report = oracle.predicted_shifts(model, None, tokenizer, clips, score)
    assert report["mean_accuracy_dx_dy"] == [1.0, 1.0] and report["mode_accuracy_dx_dy"] == [0.0, 1.0]
    mean, mode, best = (scored[report[f"{k}_psnr"] - 1] for k in ("mean", "mode", "best_shift_decoded"))
    assert torch.equal(mean, best) and not torch.equal(mode, best)


def test_shift_pick_mode_takes_the_most_likely_shift_and_bad_picks_are_refused(tokenizer, frame):
    model = hesitant_scroll_model(tokenizer)
    model.shift_pick = "mode"
    tokens = tokenizer.tokenize(rearrange(frame, "b c h w -> b c 1 h w")).indices
    frames = model.generate(tokens, torch.zeros(1, 2, dtype=torch.long), steps=2, temperature=0.0, num_frames=1)
    moved = model.scroller.move(model.scroller.pixels(tokens)[:, 0], torch.tensor([[0, -1]]))
    assert torch.equal(frames[:, 1], moved)  # (0, -1), not the mean's (2, -1)
    with pytest.raises(ValueError, match="shift_pick"):
        DynamicsModel(1000, 3, scroll=4, shift_pick="median")


def test_the_greedy_shift_is_the_rounded_mean_or_the_most_likely_class():
    # per axis over classes 0..4: half at 0 and half at 3 (mean 1.5 -> 2), then all but a little at 4
    probs = torch.tensor([[[0.5, 0.0, 0.0, 0.5, 0.0], [0.0, 0.05, 0.0, 0.0, 0.95]]]).clamp(min=1e-6)
    logits = probs.log()
    assert greedy_shift(logits, "mean").tolist() == [[2, 4]]
    assert greedy_shift(logits, "mode").tolist() in ([[0, 4]], [[3, 4]])
    with pytest.raises(ValueError, match="'mean' or 'mode'"):
        greedy_shift(logits, "median")


def test_a_rollout_decodes_each_frame_once_and_plays_as_if_it_decoded_its_context_every_step(tokenizer, frame):
    model = scroll_model(tokenizer).eval()  # max_frames 4: the window slides twice in 6 steps
    with torch.no_grad():  # a shift head that samples varied shifts, so the shift into each frame matters
        model.shift_head[-1].weight.normal_(0, 2.0)
    acts = [0, 2, 1, 1, 0, 2]
    world = World(tokenizer, model, steps=3, temperature=1.0, keep=2, generator=torch.Generator().manual_seed(0))
    decoded = []
    hook = tokenizer.decoder.register_forward_hook(lambda m, args, out: decoded.append(out.shape[0] * out.shape[2]))
    try:
        world.reset(frame)
        shown = [world.step(a) for a in acts]
    finally:
        hook.remove()
    assert sum(decoded) == 1 + 1 + len(acts)  # the prompt, the context the first step measures, each new frame

    # the same rollout decoding the whole context at every step (no `seen` passed on)
    g = torch.Generator().manual_seed(0)
    tokens = tokenizer.tokenize(rearrange(frame, "b c h w -> b c 1 h w")).indices
    actions, cache, shifts = tokens.new_zeros(1, 0), None, []
    for i, a in enumerate(acts):
        if tokens.shape[1] + 1 > model.max_frames:
            drop = tokens.shape[1] - 2
            tokens, actions, cache = tokens[:, drop:], actions[:, drop:], None
        actions = torch.cat([actions, torch.tensor([[a]])], dim=1)
        out = model.step(tokens, actions, cache, steps=3, temperature=1.0, generator=g,
                         room=model.max_frames - tokens.shape[1])  # fmt: skip
        tokens, cache = out.tokens, out.cache
        pixels = model.scroller.pixels(tokens[:, -1:])[:, 0]
        assert torch.equal(shown[i], pixels)  # the frame played is the new tokens decoded
        shifts.append(model.scroller.shifts(model.scroller.pixels(tokens[:, -2:]))[0, -1].tolist())
    assert len({tuple(s) for s in shifts}) > 1  # the scene did move, in more than one way


def test_shift_oracle_rollouts_with_the_true_shifts_follow_the_scene_the_head_s_shifts_do_not(tokenizer, frame):
    """scripts/shift_oracle.py --rollouts: the hesitant head picks (0, -1) on clips that scroll by
    (2, -1) at every step. An untrained gated model copies its moved frame, so with the true shifts
    forced its rollout follows the scene and scores well over its own; the head is its own after."""
    from helpers.stage2 import load_script

    oracle = load_script("scripts/shift_oracle.py", "shift_oracle_rollouts")
    model = hesitant_scroll_model(tokenizer)
    report = oracle.rollouts(model, None, tokenizer, scrolling_clips(frame), steps=2)
    true, own = report["true_shift_psnr"], report["predicted_shift_psnr"]
    assert len(true) == len(own) == len(report["copy_first_frame_psnr"]) == 2
    assert all(t > o + 3 for t, o in zip(true, own)), report
    assert "shift_logits" not in vars(model) and model.shift_pick == "mean"


@pytest.mark.parametrize("view", ["mean", "grid"])
def test_only_the_grid_view_tells_the_shift_by_where_a_code_is(tokenizer, view):
    """Frames of one code with a wall of a second code, a column in the left or the right half; the
    shift is +1 or -1 by that half. The same codes in each frame, so the mean token cannot tell
    them apart (chance, 50 %); a head that sees each region's tokens can (a wall beside the agent
    stops it)."""
    model = scroll_model(tokenizer, shift_view=view)
    g = torch.Generator().manual_seed(0)
    n = 64
    frames = torch.full((n, 16, 16), 7)
    left = torch.rand(n, generator=g) < 0.5
    col = torch.where(left, torch.randint(0, 8, (n,), generator=g), torch.randint(8, 16, (n,), generator=g))
    frames[torch.arange(n), :, col] = 300
    target = torch.stack([torch.where(left, 1, -1), torch.zeros(n, dtype=torch.long)], -1) + model.scroll  # (n 2)
    act = torch.zeros(n, dtype=torch.long)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(150):
        logits = model.shift_logits(frames, act, None)  # (n 2 9)
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), target.flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
    right = (model.shift_logits(frames, act, None).argmax(-1)[:, 0] == target[:, 0]).float().mean()
    if view == "grid":
        assert right > 0.95
    else:
        assert right < 0.75


def test_a_shift_view_other_than_mean_or_grid_is_refused(tokenizer):
    with pytest.raises(ValueError, match="shift_view"):
        scroll_model(tokenizer, shift_view="pooled")
