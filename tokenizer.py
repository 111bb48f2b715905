"""Stage 1: train the video tokenizer.

    python tokenizer.py fit -c config/tokenize.yaml          # CoinRun scale (App. F)
    python tokenizer.py fit -c config/tokenize.tiny.yaml     # CPU scale, ~45 minutes on 2 cores
    python tokenizer.py fit -c config/tokenize.yaml --ckpt_path last    # resume
    python tokenizer.py validate|test|predict -c ... --ckpt_path <ckpt>

LightningCLI: every argument of `genie.lit.tokenizer.TokenizerTraining`, of the
`VideoTokenizer` it trains and of `genie.data.VideoDataModule` is settable from the YAML
or the command line (`--help` lists them).
"""

from genie.data import VideoDataModule
from genie.lit.cli import TrainingCLI, run_script
from genie.lit.tokenizer import TokenizerTraining


def main(args: list[str] | None = None) -> TrainingCLI:
    return TrainingCLI(TokenizerTraining, VideoDataModule, args=args)


if __name__ == "__main__":
    run_script(main, "tokenizer.py")
