"""The layers: networks, data, play and evaluation never depend on the Lightning training code."""

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_only_training_code_imports_lightning_modules():
    outside = [p for p in (REPO / "genie").glob("*.py")] + [REPO / "play.py", REPO / "evaluate.py"]
    offenders = {p.name: sorted(m for m in _imports(p) if m.startswith("genie.lit") or m.startswith("lightning"))
                 for p in outside}  # fmt: skip
    # genie/data.py is the LightningDataModule the trainer feeds on; nothing else needs Lightning.
    allowed = {"data.py": ["lightning"]}
    offenders = {name: mods for name, mods in offenders.items() if mods and mods != allowed.get(name)}
    assert offenders == {}
