"""Transfers between the registry client and a real uvicorn on 127.0.0.1: progress while bytes move, detached
signatures found beside a package as ``verify`` finds them, embedded signatures counted by ``search``, and a client
that imports without SQLAlchemy."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import ClassVar

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric import rsa

from signery import openpgp
from signery.cli import cli
from signery.formats import dify, get_format, native
from signery.keys import FileSigner, generate_private_key
from signery.registry.app import create_app
from signery.registry.client import RegistryClient, download_size, fetch_package, publish_package, search_packages
from signery.registry.settings import RegistrySettings
from signery.registry.store import EMBEDDED_DIR, RegistryStore
from signery.trust import TrustSet, load_trusted_key_file

from .conftest import LiveRegistry, dify_package, make_zip, serve_in_thread

CREATED = datetime(2026, 1, 1, tzinfo=UTC)
BIG = 6 << 20  # several 1 MiB chunks each way


@pytest.fixture()
def live1(sqlite_settings: RegistrySettings) -> Iterator[LiveRegistry]:
    """A real uvicorn on 127.0.0.1 over SQLite (these tests are about transfers, not databases)."""
    store = RegistryStore(sqlite_settings)
    token = store.create_token("ci")[1]
    url, stop = serve_in_thread(create_app(store.settings, store=store))
    yield LiveRegistry(url, store, token)
    stop()
    store.close()


@pytest.fixture(scope="module")
def release_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(65537, 3072)


def run(args: list[str], env: dict[str, str] | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(cli, args, env=env, catch_exceptions=False)
    return result.exit_code, result.output


def big_package(tmp: Path, name: str = "big", version: str = "1.0.0") -> Path:
    return make_zip(
        tmp / f"{name}-{version}.difypkg",
        {"manifest.yaml": f"name: {name}\nversion: {version}\nauthor: acme\n", "blob.bin": os.urandom(BIG)},
    )


def assert_moving(calls: list[int], total: int) -> None:
    """Increments, each positive, adding up to ``total`` in several steps: a running count that only grows."""
    assert len(calls) >= 3, calls
    assert all(n > 0 for n in calls), calls
    running = [sum(calls[: i + 1]) for i in range(len(calls))]
    assert running == sorted(set(running)) and running[-1] == total


# -- progress -------------------------------------------------------------------------------------------------------


def test_upload_and_download_report_progress_as_bytes_move(live1: LiveRegistry, tmp_path: Path) -> None:
    pkg = big_package(tmp_path)
    sig = tmp_path / f"{pkg.name}.signery.json"
    native.sign(pkg, FileSigner(generate_private_key("ed25519"), name="alice"), output=sig, detached=True)
    sent: list[int] = []
    index, created = publish_package(live1.url, pkg, token=live1.token, signatures=[sig], progress=sent.append)
    assert created
    assert_moving(sent, pkg.stat().st_size + sig.stat().st_size)
    assert sent[0] <= 1 << 20  # reported chunk by chunk, not once at the end

    got: list[int] = []
    fetched = fetch_package(live1.url, "big", "1.0.0", tmp_path / "dl", progress=got.append)
    assert fetched.path.read_bytes() == pkg.read_bytes()
    assert_moving(got, download_size(index))


class Recorder:
    """Stands in for the CLI's Progress bar: records what it is told."""

    made: ClassVar[list[Recorder]] = []

    def __init__(self, total: int, label: str, *, quiet: bool = False) -> None:
        self.total, self.label, self.calls, self.closed = total, label, [], False
        Recorder.made.append(self)

    def advance(self, n: int) -> None:
        self.calls.append(n)

    def close(self) -> None:
        self.closed = True


def test_cli_bars_move_on_publish_install_fetch_and_mirror(
    live1: LiveRegistry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from signery.cli import install as install_cli
    from signery.cli import mirror as mirror_cli
    from signery.cli import publish as publish_cli

    for module in (publish_cli, install_cli, mirror_cli):
        monkeypatch.setattr(module, "Progress", Recorder)
    Recorder.made.clear()
    pkg = big_package(tmp_path)
    env = {"SIGNERY_REGISTRY_TOKEN": live1.token}
    code, out = run(["publish", str(pkg), "--registry", live1.url], env)
    assert code == 0, out
    (bar,) = Recorder.made
    assert bar.total == pkg.stat().st_size and bar.closed
    assert_moving(bar.calls, bar.total)

    Recorder.made.clear()
    fetched = install_cli.fetch_with_progress(live1.url, "big", None, tmp_path / "dl")
    (bar,) = Recorder.made
    assert fetched.path.read_bytes() == pkg.read_bytes() and bar.closed
    assert_moving(bar.calls, pkg.stat().st_size)

    Recorder.made.clear()
    bundle = tmp_path / "b.tar"
    assert run(["mirror", "export", "big", "--registry", live1.url, "--out", str(bundle)])[0] == 0
    (bar,) = Recorder.made
    assert_moving(bar.calls, pkg.stat().st_size)

    Recorder.made.clear()
    assert run(["mirror", "import", str(bundle), "--registry", live1.url], env)[0] == 0
    (bar,) = Recorder.made
    assert_moving(bar.calls, pkg.stat().st_size)


# -- detached signatures found beside the package -----------------------------------------------------------------


def _elastic(path: Path, name: str = "acme", version: str = "1.2.0") -> Path:
    root = f"{name}-{version}/"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(root + "manifest.yml", f"format_version: 3.0.0\nname: {name}\nversion: {version}\n")
        zf.writestr(root + "docs/README.md", "# acme\n")
    return path


def _mattermost(tmp: Path, plugin_id: str = "com.acme.demo", version: str = "0.3.0") -> Path:
    path = tmp / f"{plugin_id}-{version}.tar.gz"
    manifest = json.dumps({"id": plugin_id, "version": version}).encode()
    with tarfile.open(path, "w:gz") as tar:
        for name, data in ((f"{plugin_id}/plugin.json", manifest), (f"{plugin_id}/server/plugin.exe", b"\x7fELF")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def _pgp_trust(key: rsa.RSAPrivateKey, tmp_path: Path) -> TrustSet:
    cert = openpgp.certificate_from_private_key(key, uid="Release <release@example.org>", created=CREATED)
    p = tmp_path / "release.public.asc"
    p.write_text(cert)
    return TrustSet([replace(load_trusted_key_file(p).key, name="release")])


@pytest.mark.parametrize("kind", ["elastic-armored-sig", "mattermost-asc", "native-sidecar"])
def test_publish_takes_the_signature_beside_the_package(
    kind: str, live1: LiveRegistry, tmp_path: Path, release_key: rsa.RSAPrivateKey
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    pgp = get_format("openpgp")
    signer = openpgp.signer_from_private_key(release_key, created=CREATED)
    if kind == "elastic-armored-sig":
        pkg = _elastic(src / "acme-1.2.0.zip")
        sig = pgp.sign(pkg, signer, options=pgp.options(armor=True))
        ref, trust = ("acme", "1.2.0"), _pgp_trust(release_key, tmp_path)
    elif kind == "mattermost-asc":
        pkg = _mattermost(src)
        sig = pgp.sign(pkg, signer, output=src / f"{pkg.name}.asc", options=pgp.options(armor=True))
        ref, trust = ("com.acme.demo", "0.3.0"), _pgp_trust(release_key, tmp_path)
    else:
        pkg = dify_package(src, "demo", "1.0.0")
        alice = FileSigner(generate_private_key("ed25519"), name="alice")
        sig = native.sign(pkg, alice, detached=True)
        from signery.trust import trusted_key_from_public

        ref, trust = ("demo", "1.0.0"), TrustSet([trusted_key_from_public(alice.public_key(), name="alice")])
    assert sorted(p.name for p in src.iterdir()) == sorted([pkg.name, sig.name])  # only the signature beside it

    code, out = run(["publish", str(pkg), "--registry", live1.url, "--json"], {"SIGNERY_REGISTRY_TOKEN": live1.token})
    assert code == 0, out
    doc = json.loads(out)
    assert [s["filename"] for s in doc["signatures"]] == [sig.name]

    got = fetch_package(live1.url, *ref, tmp_path / "dl")  # the registry serves it, byte for byte
    assert [p.name for p in got.signatures] == [sig.name]
    assert got.signatures[0].read_bytes() == sig.read_bytes()
    from signery.formats import verify_all

    assert verify_all(got.path, trust=trust).verified  # beside the download, as it was beside the original
    assert search_packages(live1.url, ref[0])[0].signed


def test_an_explicit_signature_replaces_discovery(live1: LiveRegistry, tmp_path: Path) -> None:
    pkg = dify_package(tmp_path, "demo", "1.0.0")
    alice = FileSigner(generate_private_key("ed25519"), name="alice")
    native.sign(pkg, alice, detached=True)  # beside it, but not asked for
    other = tmp_path / "elsewhere"
    other.mkdir()
    sig = native.sign(pkg, alice, output=other / f"{pkg.name}.signery.json", detached=True)
    code, out = run(
        ["publish", str(pkg), "--signature", str(sig), "--registry", live1.url, "--json"],
        {"SIGNERY_REGISTRY_TOKEN": live1.token},
    )
    assert code == 0, out
    index = RegistryClient(live1.url).version("demo", "1.0.0")
    assert [s.sha256 for s in index.signatures] == [__import__("hashlib").sha256(sig.read_bytes()).hexdigest()]


# -- search: embedded signatures count --------------------------------------------------------------------------------


def test_search_counts_embedded_signatures(live1: LiveRegistry, tmp_path: Path) -> None:
    alice = FileSigner(generate_private_key("ed25519"), name="alice")
    rsa_signer = FileSigner(generate_private_key("rsa-3072"), name="dify")
    embedded = native.sign(dify_package(tmp_path / "n", "nat", "1.0.0"), alice)  # DSSE entry inside the ZIP
    with zipfile.ZipFile(embedded) as zf:
        assert native.RESERVED_ENTRY in zf.namelist()
    commented = dify.sign(dify_package(tmp_path / "d", "dif", "1.0.0"), rsa_signer)  # in the ZIP comment
    plain = dify_package(tmp_path / "p", "plain", "1.0.0")
    for pkg in (embedded, commented, plain):
        assert publish_package(live1.url, pkg, token=live1.token)[0].signatures == ()  # nothing detached

    found = {p.name: p.signed for p in search_packages(live1.url)}
    assert found == {"nat": True, "dif": True, "plain": False}
    code, out = run(["search", "--registry", live1.url])
    assert code == 0
    assert {line.split()[0]: line.split()[2] for line in out.splitlines()} == {
        "dif": "signed",
        "nat": "signed",
        "plain": "unsigned",
    }

    # Recorded at publish time; a blob published before the record existed is examined once and recorded then.
    records = live1.store.settings.data_dir / EMBEDDED_DIR
    assert len(list(records.iterdir())) == 3
    for record in records.iterdir():
        record.unlink()
    assert {p.name: p.signed for p in search_packages(live1.url)} == found
    assert len(list(records.iterdir())) == 3

    # An unsigned latest version is unsigned, whatever older versions carried.
    publish_package(live1.url, dify_package(tmp_path / "n2", "nat", "1.1.0"), token=live1.token)
    assert {p.name: p.signed for p in search_packages(live1.url, "nat")} == {"nat": False}


# -- the client stands alone ----------------------------------------------------------------------------------------


def test_registry_client_imports_without_sqlalchemy() -> None:
    code = "import sys; sys.modules['sqlalchemy']=None; import signery.registry.client"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    both = "import sys; sys.modules['sqlalchemy']=None; import signery.registry.mirror, signery.cli.publish"
    out = subprocess.run([sys.executable, "-c", both], capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stderr
