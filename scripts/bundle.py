"""Write the small default model that play.py and evaluate.py use from a fresh clone (res/).

    python scripts/bundle.py --checkpoint runs/genie.tiny/checkpoints/last.ckpt \\
        --tokenizer_checkpoint runs/tokenizer.tiny/checkpoints/last.ckpt --root ./data --out res

Keeps only what inference needs: each network's stored configuration and its weights in
float16 (loaded back into float32 modules), no optimizer state. The Genie checkpoint records
where it came from (source paths and training steps) and refers to the bundled tokenizer.
The example image is the most varied of 64 frames spread over the test split (levels never
trained on); `heldout.npz` holds a few test clips with their actions for the bundled-model test.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from genie.checkpoints import read_checkpoint  # noqa: E402
from genie.data import VideoDataModule  # noqa: E402
from genie.lit.genie import DATA_FACTS  # noqa: E402


def slim(src: Path, names: tuple[str, ...], extra: dict | None = None) -> dict:
    ckpt = read_checkpoint(src)
    state = {k: (v.half() if v.is_floating_point() else v) for k, v in ckpt["state_dict"].items()
             if k.split(".")[0] in names}  # fmt: skip
    networks = {name: ckpt["networks"][name] for name in names}
    source = {"path": str(src), "global_step": ckpt.get("global_step"), "epoch": ckpt.get("epoch")}
    return {"state_dict": state, "networks": networks, "source": source, **(extra or {})}


def save(obj: dict, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    tmp.replace(path)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", required=True, help="genie.py fit checkpoint")
    p.add_argument("--tokenizer_checkpoint", required=True, help="the tokenizer.py fit checkpoint it was trained on")
    p.add_argument("--root", default="./data", help="data root, for the example image")
    p.add_argument("--out", default="res")
    p.add_argument("--heldout_clips", type=int, default=32, help="test clips saved for the bundled-model test")
    p.add_argument("--heldout_frames", type=int, default=6, help="frames per saved clip")
    p.add_argument("--shift_pick", choices=("mean", "mode"),
                   help="with a scroll model: the greedy shift the bundle takes (default: the checkpoint's)")
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if Path(args.tokenizer_checkpoint).resolve() == (out / "tokenizer.ckpt").resolve():  # already bundled: its
        print(f"keeping {out / 'tokenizer.ckpt'}")  # record of where it came from stays
    else:
        save(slim(Path(args.tokenizer_checkpoint), ("tokenizer",)), out / "tokenizer.ckpt")
    genie = read_checkpoint(args.checkpoint)
    dynamics = genie["networks"]["dynamics"]
    if args.shift_pick and not dynamics.get("scroll"):
        p.error(f"--shift_pick: {args.checkpoint} has no scroll head (dynamics.scroll: 0)")
    codebook = genie["tokenizer"]["codebook_size"]
    trained_with = genie["tokenizer"]["path"]
    recorded = {"path": str(out / "tokenizer.ckpt"), "codebook_size": codebook, "trained_with": trained_with}
    dm = VideoDataModule(args.root, num_frames=1, batch_size=64, num_workers=0, eval_clips=64)
    data = genie.get("data") or {k: v for k, v in dm.metadata.items() if k in DATA_FACTS}  # what one step is
    extra = {"tokenizer": recorded, "action_source": genie.get("action_source", "latent"), "data": data}
    bundle = slim(Path(args.checkpoint), ("lam", "dynamics"), extra)
    if args.shift_pick:  # a setting of generation, stored with the network's configuration
        bundle["networks"]["dynamics"] = {**bundle["networks"]["dynamics"], "shift_pick": args.shift_pick}
    save(bundle, out / "genie.ckpt")
    frames = next(iter(dm.test_dataloader())).frames[:, 0]  # (64 h w c), spread over the test levels
    busiest = frames.float().std(dim=(1, 2, 3)).argmax()  # the most varied scene: not a blank wall
    Image.fromarray(frames[busiest].numpy()).save(out / "example.png")
    print(f"wrote {out / 'example.png'}")
    write_heldout(args.root, out / "heldout.npz", clips=args.heldout_clips, frames=args.heldout_frames)
    return 0


def write_heldout(root: str, path: Path, clips: int, frames: int) -> None:
    """A handful of test-split clips (levels never trained on), spread over the split, with their
    recorded actions: what the bundled-model test plays against, on a fresh clone without data."""
    dm = VideoDataModule(root, num_frames=frames, batch_size=clips, num_workers=0, eval_clips=clips)
    batch = next(iter(dm.test_dataloader()))
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez_compressed(tmp, frames=batch.frames.numpy(), actions=batch.actions.numpy())  # (n t h w c), (n t)
    tmp.replace(path)
    print(f"wrote {path} ({len(batch.frames)} clips x {frames} frames, {path.stat().st_size / 1e3:.0f} kB)")


if __name__ == "__main__":
    sys.exit(main())
