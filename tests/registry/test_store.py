"""The store without HTTP: concurrent publishes of one version, on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from signery.errors import ConflictError, SigneryError
from signery.registry.store import RegistryStore
from signery.registry.tokens import Publisher

from .conftest import dify_package


def stage(store: RegistryStore, pkg: Path) -> str:
    sha = hashlib.sha256(pkg.read_bytes()).hexdigest()
    shutil.copy(pkg, store.blobs.staged_path(sha))
    return sha


def test_concurrent_publishes_of_one_version(store: RegistryStore, tmp_path: Path) -> None:
    """Eight publishers race to publish demo@1.0.0 with different bytes: exactly one wins, the rest get 409."""
    publisher = Publisher(name="ci", scopes=("*",))
    shas = [stage(store, dify_package(tmp_path / str(i), "demo", "1.0.0", extra=str(i))) for i in range(8)]

    def attempt(sha: str) -> str:
        try:
            store.publish(publisher, package_sha256=sha, filename="demo.difypkg")
            return "won"
        except ConflictError:
            return "conflict"
        except SigneryError as exc:
            return exc.reason.value

    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(attempt, shas))
    assert outcomes.count("won") == 1 and outcomes.count("conflict") == 7, outcomes
    winner = shas[outcomes.index("won")]
    assert store.get_version("demo", "1.0.0").sha256 == winner
    assert list(store.settings.staging_dir.iterdir()) == []
    stored = [p.name for p in store.settings.blob_dir.rglob("*") if p.is_file()]
    assert winner in stored
