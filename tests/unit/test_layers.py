"""The layering rules of docs/architecture.md, checked on the source itself.

The library never prints, exits or reads environment variables, and never imports the CLI or server frameworks;
only ``signery.cli`` (and the servers' own entry points) do. Format modules never open sockets.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[2] / "src" / "signery"
ADAPTERS = ("cli",)  # thin layers allowed to print, exit and read the environment
SERVERS = ("service", "registry", "web")  # may import FastAPI; still never print or exit
LIBRARY = [p for p in PKG.rglob("*.py") if p.relative_to(PKG).parts[0] not in ADAPTERS and "migrations" not in p.parts]


def _facts(path: Path) -> tuple[set[str], list[str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    imports: set[str] = set()
    calls: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imports.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            imports.add(node.module.split(".")[0])
        elif isinstance(node, ast.ImportFrom) and node.level > 0 and node.module:
            imports.add("signery." + node.module.split(".")[0])
        elif isinstance(node, ast.Call):
            f = node.func
            if isinstance(f, ast.Name) and f.id in ("print", "exit", "input"):
                calls.append(f.id)
            elif (
                isinstance(f, ast.Attribute)
                and isinstance(f.value, ast.Name)
                and (f.value.id, f.attr) in (("sys", "exit"), ("os", "getenv"), ("os", "_exit"))
            ):
                calls.append(f"{f.value.id}.{f.attr}")
        elif (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and (node.value.id, node.attr) == ("os", "environ")
        ):
            calls.append("os.environ")
    return imports, calls


@pytest.mark.parametrize("path", LIBRARY, ids=lambda p: str(p.relative_to(PKG)))
def test_library_never_prints_exits_or_reads_the_environment(path: Path) -> None:
    imports, calls = _facts(path)
    assert not calls, f"{path.relative_to(PKG)} calls {calls}: only signery.cli may"
    assert "click" not in imports and "rich" not in imports, "only the CLI renders"
    assert "signery.cli" not in imports


@pytest.mark.parametrize(
    "path",
    [p for p in LIBRARY if p.relative_to(PKG).parts[0] not in SERVERS],
    ids=lambda p: str(p.relative_to(PKG)),
)
def test_library_does_not_import_web_frameworks(path: Path) -> None:
    imports, _ = _facts(path)
    assert not imports & {"fastapi", "uvicorn", "starlette"}, f"{path.relative_to(PKG)} imports a server framework"


@pytest.mark.parametrize("path", sorted((PKG / "formats").glob("*.py")), ids=lambda p: p.name)
def test_formats_never_open_sockets(path: Path) -> None:
    imports, _ = _facts(path)
    assert not imports & {"socket", "httpx", "urllib", "http"}, f"formats/{path.name} must not touch the network"
