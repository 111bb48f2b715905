"""The evaluation suite of a trained Genie on held-out clips (`evaluate.py` writes its report).

Shape legend: b clips, c channels, T frames per clip, H W pixels, h w token grid,
k = horizon (generated frames per rollout), K latent actions, A true actions.

Per batch of real clips `video (b c T H W)` with their recorded actions `(b T)`:
- tokenizer: reconstruction PSNR / SSIM of every frame and the codebook usage;
- LAM: the latent action of every transition, `latent (b T-1)`, counted against the true
  action of the same transition (K x A contingency -> NMI and the confusion plot);
- dynamics, teacher-forced: frame t generated from the *real* tokens of frames < t and
  the latent actions, decoded and compared with real frame t (t = 1..T-1);
- dynamics, rollout: frames 1..k generated autoregressively from frame 0 alone with the
  inferred latent actions; PSNR at each horizon t;
- controllability, Delta_t PSNR at t = 4 (Genie Sec. 3): PSNR(real_t, rollout with the
  inferred actions) minus PSNR(real_t, rollout with other actions), two variants:
  "genie" replaces the whole sequence with uniformly random latent actions (Genie's
  definition), "genie_redux" replaces only the last action (t-1 -> t) with a different
  random one (GenieRedux's variant);
- baselines to read the numbers against: copying the last real frame (teacher-forced) and
  copying frame 0 (rollout), each in pixels and through the tokenizer (`*_tokens_*`: the
  reconstruction of the copied frame). The latter shares the tokenizer's reconstruction error
  with the model, so the gap to it is what the dynamics model adds.
PSNR of identical frames (+inf) counts as `metrics.PSNR_CAP`.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange

from genie import maskgit
from genie.action import LatentAction
from genie.data import to_frames
from genie.dynamics import DynamicsModel
from genie.metrics import PSNR_CAP, codebook_usage_from_counts, contingency_table, nmi_from_contingency, psnr, ssim
from genie.record import PROCGEN_ACTIONS
from genie.tokenizer import VideoTokenizer

DELTA_T = 4  # Genie reports Delta_t PSNR at t = 4
RENDERS = ("tokens", "expected")  # how generated frames become pixels (`Evaluator`'s `render`)


def frame_psnr(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """`(b c t H W)` videos in [-1, 1] -> PSNR `(b t)` with +inf capped at `PSNR_CAP`."""
    return psnr(x, y).clamp(max=PSNR_CAP)


class Evaluator:
    """Accumulates the suite over batches (`update`) and summarises it (`report`).

    Args:
        tokenizer, lam, dynamics: the trained networks (put in eval mode here).
        horizon: k, frames per rollout (clips need T >= k + 1 frames).
        num_true_actions: A, size of the recorded action space (CoinRun: 15).
        steps, temperature: MaskGIT sampling.
        generator: random generator of the sampling and of the random actions.
        examples: clips kept for the side-by-side GIF.
        action_source: `latent` (rollouts driven by the LAM's actions) or `recorded` (by the
            recorded actions: a dynamics model trained on them, the ground-truth ceiling).
        render: how generated frames become pixels: `tokens` (the decoder reads the sampled
            tokens, as in Genie) or `expected` (it reads each token's expected code under the
            distribution it was sampled from, `DynamicsModel.generate_expected`; the next frames
            are still predicted from the sampled tokens).
    """

    def __init__(
        self,
        tokenizer: VideoTokenizer,
        lam: LatentAction,
        dynamics: DynamicsModel,
        horizon: int,
        num_true_actions: int = PROCGEN_ACTIONS,
        steps: int = maskgit.STEPS,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
        examples: int = 4,
        action_source: str = "latent",
        render: str = "tokens",
    ):
        if render not in RENDERS:
            raise ValueError(f"render must be one of {RENDERS}, got {render!r}")
        if horizon < 1 or horizon + 1 > min(dynamics.max_frames, lam.max_frames):
            raise ValueError(
                f"horizon {horizon} needs {horizon + 1} frames; the models take at most "
                f"{min(dynamics.max_frames, lam.max_frames)} (max_frames)"
            )
        self.tokenizer, self.lam, self.dynamics = tokenizer.eval(), lam.eval(), dynamics.eval()
        if getattr(dynamics, "scroll", 0):  # it moves frames with the tokenizer (`genie.scroll`)
            dynamics.attach(tokenizer)
        self.horizon, self.steps, self.temperature, self.generator = horizon, steps, temperature, generator
        self.num_examples = examples
        self.recorded = action_source == "recorded"
        self.values = tokenizer.code_table() if render == "expected" else None  # (V d)
        K, V = lam.num_actions, tokenizer.codebook_size
        self.contingency = torch.zeros(K, num_true_actions, dtype=torch.long)
        self.code_counts = torch.zeros(V, dtype=torch.float64)
        self.sums: dict[str, torch.Tensor] = {}  # name -> running sum (per horizon where it applies)
        self.counts: dict[str, int] = {}
        self.examples: list[np.ndarray] = []  # (3 t H W c): real, reconstruction, rollout

    def _add(self, name: str, values: torch.Tensor) -> None:
        """Add per-sample values `(b)` or `(b k)` to the running mean of `name`."""
        values = values.detach().double().cpu()
        self.sums[name] = self.sums.get(name, 0) + values.sum(0)
        self.counts[name] = self.counts.get(name, 0) + values.shape[0]

    def _mean(self, name: str) -> float | list[float]:
        mean = self.sums[name] / self.counts[name]
        return [round(float(v), 3) for v in mean] if mean.dim() else round(float(mean), 3)

    @torch.no_grad()
    def update(self, video: torch.Tensor, true_actions: torch.Tensor) -> None:
        """One batch: `video (b c T H W)` in [-1, 1], `true_actions (b T)` (index t leads t -> t+1)."""
        b, _, T = video.shape[:3]
        k = self.horizon
        if T < k + 1:
            raise ValueError(f"clips of {T} frames are too short for horizon {k} (need {k + 1})")
        tok = self.tokenizer
        tokens = tok.tokenize(video).indices  # (b T h w)
        recon = tok.decode(tokens).float().clamp(-1, 1)
        self._add("tokenizer_psnr", frame_psnr(recon, video).mean(1))
        self._add("tokenizer_ssim", ssim(recon, video).mean(1))
        self.code_counts += torch.bincount(tokens.flatten().cpu(), minlength=tok.codebook_size).double()

        inferred = self.lam.encode(video)[0].actions  # (b T-1)
        self.contingency += contingency_table(inferred.cpu(), true_actions[:, : T - 1], *self.contingency.shape)
        latent = true_actions[:, : T - 1].to(inferred) if self.recorded else inferred  # what drives the dynamics

        # --- teacher forcing: real past, one generated frame ---
        forced, forced_tokens = [], []
        for t in range(1, T):
            gen, pixels = self._generate(tokens[:, :t], latent[:, :t], 1)
            forced.append(pixels[:, :, -1])
            forced_tokens.append(gen[:, -1])
        forced = torch.stack(forced, dim=2)  # (b c T-1 H W)
        self._token_counts(torch.stack(forced_tokens, dim=1), tokens)
        self._add("teacher_forced_psnr", frame_psnr(forced, video[:, :, 1:]).mean(1))
        self._add("copy_last_frame_psnr", frame_psnr(video[:, :, :-1], video[:, :, 1:]).mean(1))
        self._add("copy_last_frame_tokens_psnr", frame_psnr(recon[:, :, :-1], video[:, :, 1:]).mean(1))

        # --- rollouts from frame 0 alone ---
        real = video[:, :, 1 : k + 1]
        rollout = self._rollout(tokens, latent[:, :k])  # (b c k H W)
        self._add("rollout_psnr", frame_psnr(rollout, real))
        self.last_rollout = torch.cat([recon[:, :, :1], rollout], dim=2)  # (b c k+1 H W), for FVD
        self._add("copy_first_frame_psnr", frame_psnr(video[:, :, :1].expand_as(real), real))
        self._add("copy_first_frame_tokens_psnr", frame_psnr(recon[:, :, :1].expand_as(real), real))
        if k >= DELTA_T:
            K, g = self.dynamics.act_vocab, self.generator
            dev = latent.device
            random_seq = torch.randint(0, K, (b, k), generator=g, device=g.device if g else dev).to(dev)
            other = latent[:, :k].clone()  # only the action into frame DELTA_T changes, to a different one
            shift = torch.randint(1, K, (b,), generator=g, device=g.device if g else dev).to(dev)
            other[:, DELTA_T - 1] = (other[:, DELTA_T - 1] + shift) % K
            i = DELTA_T - 1
            base = frame_psnr(rollout[:, :, i : i + 1], real[:, :, i : i + 1])[:, 0]
            for name, acts in (("genie", random_seq), ("genie_redux", other)):
                alt = self._rollout(tokens, acts[:, :DELTA_T])[:, :, i : i + 1]
                self._add(f"delta_psnr_{name}", base - frame_psnr(alt, real[:, :, i : i + 1])[:, 0])
        room = self.num_examples - len(self.examples)
        for j in range(min(room, b)):
            trio = torch.stack([video[j, :, : k + 1], recon[j, :, : k + 1], self.last_rollout[j]])
            self.examples.append(to_frames(trio).cpu().numpy())  # (3 t H W c)

    def _token_counts(self, generated: torch.Tensor, tokens: torch.Tensor) -> None:
        """Teacher-forced tokens `generated (b T-1 h w)` against the real `tokens (b T h w)`: how many
        are right, and on the tokens that changed from the frame before (where a copy is always
        wrong) how many are right and how many the model copied instead. Every clip has as many
        tokens, so the ratios of these per-clip means are ratios of the totals."""
        real, before = tokens[:, 1:], tokens[:, :-1]
        changed = rearrange(real != before, "b t h w -> b (t h w)").float()
        right = rearrange(generated == real, "b t h w -> b (t h w)").float()
        copied = rearrange(generated == before, "b t h w -> b (t h w)").float()
        self._add("token_right", right.mean(1))
        self._add("token_changed", changed.mean(1))
        self._add("token_changed_right", (right * changed).mean(1))
        self._add("token_copied", copied.mean(1))
        self._add("token_changed_copied", (copied * changed).mean(1))

    def _generate(self, tokens: torch.Tensor, acts: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """`n` frames after `tokens (b T h w)`: all `T+n` frames' tokens and their pixels `(b c T+n H W)`,
        the new frames rendered as `render` says."""
        kw = dict(steps=self.steps, temperature=self.temperature, num_frames=n, generator=self.generator)
        if self.values is None:
            gen = self.dynamics.generate(tokens, acts, **kw)
            return gen, self.tokenizer.decode(gen).float().clamp(-1, 1)
        out = self.dynamics.generate_expected(tokens, acts, self.values, **kw)
        past = rearrange(self.values[tokens], "b t h w d -> b d t h w")
        codes = torch.cat([past, out.expected.to(past)], dim=2)
        return out.tokens, self.tokenizer.decode(codes).float().clamp(-1, 1)

    def _rollout(self, tokens: torch.Tensor, acts: torch.Tensor) -> torch.Tensor:
        """Frames 1..n `(b c n H W)` generated from real frame 0 with `acts (b n)`, decoded."""
        return self._generate(tokens[:, :1], acts, acts.shape[1])[1][:, :, 1:]

    def _token_report(self) -> dict:
        """Token-level teacher forcing: accuracy, the real share of tokens that change from the
        frame before, how many of those the model gets right and how many it copies instead, and
        the share of all tokens it copies."""
        total = {k: float(v) for k, v in self.sums.items() if k.startswith("token_")}  # same count each
        changed = max(total["token_changed"], 1e-12)
        n = self.counts["token_right"]
        return {
            "accuracy": round(total["token_right"] / n, 4),
            "changed_share": round(total["token_changed"] / n, 4),
            "changed_accuracy": round(total["token_changed_right"] / changed, 4),
            "changed_copied": round(total["token_changed_copied"] / changed, 4),
            "copied_share": round(total["token_copied"] / n, 4),
        }

    def report(self) -> dict:
        """The summary: means over clips, per-horizon lists, NMI, action shares."""
        usage = codebook_usage_from_counts(self.code_counts)
        used = self.contingency.sum(1)
        out = {
            "clips": self.counts.get("tokenizer_psnr", 0),
            "action_source": "recorded" if self.recorded else "latent",
            "render": "tokens" if self.values is None else "expected",
            "tokenizer": {
                "psnr": self._mean("tokenizer_psnr"),
                "ssim": self._mean("tokenizer_ssim"),
                "codebook_usage": round(float(usage.fraction_used), 4),
                "codebook_perplexity": round(float(usage.perplexity), 1),
            },
            "dynamics": {
                "teacher_forced_psnr": self._mean("teacher_forced_psnr"),
                "copy_last_frame_psnr": self._mean("copy_last_frame_psnr"),
                "rollout_psnr_by_horizon": self._mean("rollout_psnr"),
                "copy_first_frame_psnr_by_horizon": self._mean("copy_first_frame_psnr"),
                "copy_last_frame_tokens_psnr": self._mean("copy_last_frame_tokens_psnr"),
                "copy_first_frame_tokens_psnr_by_horizon": self._mean("copy_first_frame_tokens_psnr"),
                "teacher_forced_tokens": self._token_report(),
            },
            "lam": {
                "nmi_true_actions": round(float(nmi_from_contingency(self.contingency)), 4),
                "actions_used": int((used > 0).sum()),
                "action_shares": [round(float(v), 4) for v in used / used.sum().clamp(min=1)],
                "contingency": self.contingency.tolist(),
            },
        }
        if "delta_psnr_genie" in self.sums:
            out["delta_psnr_t4"] = {
                "genie": self._mean("delta_psnr_genie"),
                "genie_redux": self._mean("delta_psnr_genie_redux"),
                "definition": {
                    "genie": "PSNR(real, rollout with inferred latent actions) - PSNR(real, rollout with a uniformly "
                    "random latent-action sequence), at t = 4 (Genie Sec. 3)",
                    "genie_redux": "as 'genie', but only the last action (frame 3 -> 4) replaced by a different "
                    "random one (GenieRedux)",
                },
            }
        return out


def frechet_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """Frechet distance between Gaussians fitted to features `a (n f)` and `b (m f)`:
    |mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2)), the trace of the root taken from the
    eigenvalues of S_a S_b (real and >= 0 for covariance matrices, up to rounding)."""
    a, b = a.double(), b.double()
    mu_a, mu_b = a.mean(0), b.mean(0)
    s_a, s_b = torch.cov(a.T), torch.cov(b.T)
    root = torch.linalg.eigvals(s_a @ s_b).real.clamp(min=0).sqrt().sum()
    return float((mu_a - mu_b).square().sum() + s_a.trace() + s_b.trace() - 2 * root)


def fvd(detector: torch.nn.Module, real: torch.Tensor, fake: torch.Tensor) -> float:
    """FVD (Unterthiner et al. 2018) of videos `(n c t H W)` in [-1, 1] with an I3D `detector`.

    `detector` follows the TorchScript I3D used by StyleGAN-V and universome/fvd-comparison
    (`i3d_torchscript.pt`): called on `(n c t H W)` in [-1, 1] with `rescale=False,
    resize=True, return_features=True`, it returns `(n 400)` features.
    """
    feats = [detector(v, rescale=False, resize=True, return_features=True) for v in (real, fake)]
    if any(f.shape[0] < 2 for f in feats):
        return math.nan
    return frechet_distance(feats[0], feats[1])


# --- the tokenizer alone ---
POOL_FACTORS = (2, 4, 8)  # no-learning baselines: average k x k blocks, upsample bilinearly


def pooled(video: torch.Tensor, k: int) -> torch.Tensor:
    """`video (b c T H W)` with each frame's k x k pixel blocks averaged and bilinearly upsampled
    back: what a tokenizer must beat to have learned anything at that down-sampling."""
    T = video.shape[2]
    frames = rearrange(video, "b c t h w -> (b t) c h w")
    small = F.avg_pool2d(frames, k)
    back = F.interpolate(small, size=frames.shape[-2:], mode="bilinear", align_corners=False)
    return rearrange(back, "(b t) c h w -> b c t h w", t=T)


@torch.no_grad()
def evaluate_tokenizer(tokenizer: VideoTokenizer, batches, grid_frames: int = 8) -> tuple[dict, torch.Tensor]:
    """Reconstruction of held-out clips: `batches` yields videos `(b c T H W)` in [-1, 1].

    Returns the report (PSNR and SSIM of every frame averaged, code usage and perplexity, and the
    PSNR of the average-pooling baselines) and `grid (2 c T' H W)`: `grid_frames` real frames
    (index 0) over their reconstructions (index 1), one frame from each of the first clips.
    """
    tokenizer.eval()
    sums: dict[str, float] = {}
    frames = 0
    counts = torch.zeros(tokenizer.codebook_size, dtype=torch.float64)
    real, fake = [], []
    for video in batches:
        tokens = tokenizer.tokenize(video).indices
        rec = tokenizer.decode(tokens).float().clamp(-1, 1)
        scores = {"psnr": frame_psnr(rec, video), "ssim": ssim(rec, video)}
        scores |= {f"avg_pool_{k}x{k}_psnr": frame_psnr(pooled(video, k), video) for k in POOL_FACTORS}
        for name, value in scores.items():
            sums[name] = sums.get(name, 0.0) + float(value.double().sum())
        frames += video.shape[0] * video.shape[2]
        counts += torch.bincount(tokens.flatten().cpu(), minlength=tokenizer.codebook_size).double()
        if sum(len(r) for r in real) < grid_frames:
            real.append(video[:, :, 0].cpu())
            fake.append(rec[:, :, 0].cpu())
    if not frames:
        raise ValueError("no held-out clips to evaluate")
    usage = codebook_usage_from_counts(counts)
    report = {name: round(total / frames, 3) for name, total in sums.items()}
    report |= {"frames": frames, "codebook_size": tokenizer.codebook_size,
               "codebook_usage": round(float(usage.fraction_used), 4),
               "codebook_perplexity": round(float(usage.perplexity), 1)}  # fmt: skip
    pick = lambda xs: rearrange(torch.cat(xs)[:grid_frames], "n c h w -> c n h w")  # noqa: E731
    return report, torch.stack([pick(real), pick(fake)])
