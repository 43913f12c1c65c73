"""docs/architecture.md is the picture of the house: its module list names every module and package there is."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "src" / "signery"
SKIP = {"__init__.py", "__main__.py", "py.typed", "data", "__pycache__"}


def listed() -> set[str]:
    text = (ROOT / "docs" / "architecture.md").read_text()
    block = text.split("```", 2)[1]
    return {m.group(1) for m in re.finditer(r"^([A-Za-z_][\w.]*/?)\s", block, re.M)}


def present() -> set[str]:
    out = set()
    for path in PACKAGE.iterdir():
        if path.name in SKIP or path.suffix in (".so", ".pyi") or path.name.endswith(".egg-info"):
            continue
        out.add(path.name + "/" if path.is_dir() else path.name)
    return out


def test_the_module_list_names_every_top_level_module_and_package() -> None:
    assert present() - listed() == set(), "add these to docs/architecture.md"
    assert listed() - present() == set(), "these are in docs/architecture.md but not in src/signery"
