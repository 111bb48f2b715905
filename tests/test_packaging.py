"""pyproject.toml describes an installable package (`pip install -e .`) with the requirements of
requirements.txt, so both ways of installing give the same environment."""

from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

REPO = Path(__file__).resolve().parents[1]


def _requirements() -> list[str]:
    lines = [line.split("#")[0].strip() for line in (REPO / "requirements.txt").read_text().splitlines()]
    return [line for line in lines if line]


def test_pyproject_lists_the_requirements_of_requirements_txt():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    declared = project["dependencies"] + project["optional-dependencies"]["test"]
    assert sorted(declared) == sorted(_requirements())
    assert project["optional-dependencies"]["test"] == ["pytest>=8"]  # only the tests need it


def test_the_package_is_genie_with_every_subpackage_and_nothing_else():
    """What setuptools packages with pyproject's `find` settings: genie and all its subpackages,
    not the tests, the benchmarks or the scripts (they run from a checkout)."""
    setuptools = pytest.importorskip("setuptools")
    find = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    found = set(setuptools.find_packages(str(REPO), **find))
    on_disk = {p.parent.relative_to(REPO).as_posix().replace("/", ".") for p in (REPO / "genie").rglob("__init__.py")}
    assert found == on_disk and {"genie", "genie.lit"} <= found
