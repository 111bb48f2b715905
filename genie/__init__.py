"""Genie: Generative Interactive Environments (Bruce et al., 2024), on Procgen CoinRun.

Public names are imported lazily (PEP 562) so that light entry points such as
`sample.py` start without loading torch.
"""

import importlib

_LAZY = {
    "VideoDataModule": "genie.data",
    "VideoTokenizer": "genie.tokenizer",
    "MAGVIT2_ENC_DESC": "genie.tokenizer",
    "MAGVIT2_DEC_DESC": "genie.tokenizer",
    "LatentAction": "genie.action",
    "LATENT_ACT_ENC": "genie.action",
    "LATENT_ACT_DEC": "genie.action",
    "DynamicsModel": "genie.dynamics",
}

__all__ = list(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'genie' has no attribute {name!r}")
