"""Stage 2: train the latent action model and the dynamics model together, tokenizer frozen.

    python genie.py fit -c config/genie.yaml                 # CoinRun scale (App. F), one GPU
    python genie.py fit -c config/genie.tiny.yaml            # CPU scale
    python genie.py fit -c config/genie.yaml --ckpt_path last          # resume
    python genie.py validate|test|predict -c ... --ckpt_path <ckpt>

`model.tokenizer_ckpt_path` names the `tokenizer.py fit` checkpoint; the dynamics model's
vocabulary and action count come from it and from the LAM. LightningCLI: every argument of
`genie.lit.genie.GenieTraining`, of the networks and of `genie.data.VideoDataModule` is
settable from the YAML or the command line (`--help` lists them).
"""

from genie.data import VideoDataModule
from genie.lit.cli import TrainingCLI, run_script
from genie.lit.genie import GenieTraining


class GenieCLI(TrainingCLI):
    def add_arguments_to_parser(self, parser) -> None:
        # The clip length is written once, as data.num_frames: the LAM's time positions follow it,
        # and the dynamics model takes the LAM's (GenieTraining), so no preset can disagree.
        parser.link_arguments("data.num_frames", "model.lam.init_args.max_frames")


def main(args: list[str] | None = None) -> TrainingCLI:
    return GenieCLI(GenieTraining, VideoDataModule, args=args)


if __name__ == "__main__":
    run_script(main, "genie.py")
