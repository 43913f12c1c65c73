"""Helpers for the host-protocol tests: packages in each host's layout, OpenPGP keys, a live registry."""

from __future__ import annotations

import functools
import io
import json
import tarfile
import zipfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from click.testing import CliRunner, Result

from signery import openpgp
from signery.cli import cli
from signery.keys import Signer
from signery.openpgp._armor import armor, dearmor
from signery.registry.app import create_app
from signery.registry.settings import RegistrySettings
from signery.registry.store import RegistryStore

from .conftest import LiveRegistry, serve_in_thread


@dataclass(frozen=True)
class PgpKey:
    generated: openpgp.GeneratedKey
    signer: Signer

    @property
    def fingerprint(self) -> str:
        return self.generated.fingerprint

    def public_file(self, directory: Path, name: str) -> Path:
        path = directory / f"{name}.public.asc"
        path.write_text(self.generated.public_armored)
        return path


@functools.cache
def pgp_key(uid: str, algorithm: str = "rsa-3072") -> PgpKey:
    """One key per (uid, algorithm) for the whole session: RSA key generation is slow."""
    gen = openpgp.generate_key(uid, algorithm=algorithm)
    return PgpKey(gen, openpgp.load_signer(gen.secret_armored.encode(), source=uid))


def pgp_sign(path: Path, keys: Sequence[PgpKey], *, armored: bool = True, suffix: str = ".sig") -> Path:
    """A detached signature file holding one packet per key, in the order given (author, then countersigners)."""
    from signery.formats import get_format

    pgp = get_format("openpgp")
    packets = b""
    for i, key in enumerate(keys):
        out = path.with_name(f"{path.name}.part{i}")
        pgp.sign(path, key.signer, output=out, options=pgp.options(armor=False))
        packets += out.read_bytes()
        out.unlink()
    sig = path.with_name(path.name + suffix)
    sig.write_bytes(armor(packets, "SIGNATURE").encode() if armored else packets)
    return sig


def first_issuer(sig: bytes) -> str | None:
    from signery.registry.hosts import openpgp_packets

    return openpgp_packets(sig, source="sig")[0].issuer


def elastic_zip(directory: Path, name: str, version: str, **manifest: Any) -> Path:
    """An Elastic integration zip in Elastic's layout: everything under ``name-version/``."""
    doc: dict[str, Any] = {
        "format_version": "2.7.0",
        "name": name,
        "title": name.replace("_", " ").title(),
        "version": version,
        "description": f"Collect {name} logs",
        "type": "integration",
        "categories": ["security"],
        "conditions": {"kibana": {"version": "^8.0.0"}},
        "icons": [{"src": "/img/icon.svg", "title": "icon", "size": "32x32", "type": "image/svg+xml"}],
        "owner": {"github": "acme/integrations", "type": "partner"},
        "policy_templates": [{"name": name, "title": name, "description": "d", "inputs": []}],
    }
    doc.update(manifest)
    root = f"{name}-{version}"
    path = directory / f"{name}-{version}.zip"
    directory.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(f"{root}/manifest.yml", yaml.safe_dump(doc, sort_keys=False))
        z.writestr(f"{root}/docs/README.md", f"# {name}\n\nReadme of {version}.\n")
        z.writestr(f"{root}/img/icon.svg", "<svg xmlns='http://www.w3.org/2000/svg'/>")
        z.writestr(f"{root}/data_stream/log/manifest.yml", "title: log\ntype: logs\n")
    return path


def mattermost_bundle(directory: Path, plugin_id: str, version: str, **manifest: Any) -> Path:
    doc: dict[str, Any] = {
        "id": plugin_id,
        "name": plugin_id.rsplit(".", 1)[-1].title(),
        "description": f"The {plugin_id} plugin",
        "version": version,
        "min_server_version": "9.0.0",
        "server": {"executables": {"linux-amd64": "server/dist/plugin-linux-amd64"}},
    }
    doc.update(manifest)
    path = directory / f"{plugin_id}-{version}.tar.gz"
    directory.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        for name, data in (
            (f"{plugin_id}/plugin.json", json.dumps(doc).encode()),
            (f"{plugin_id}/server/dist/plugin-linux-amd64", b"\x7fELF" + version.encode()),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o755
            tar.addfile(info, io.BytesIO(data))
    return path


def dify_zip(directory: Path, org: str, name: str, version: str, *, filler: bytes = b"") -> Path:
    manifest = {
        "version": version,
        "type": "plugin",
        "author": org,
        "name": name,
        "label": {"en_US": name.title()},
        "description": {"en_US": f"The {name} tool"},
        "icon": "icon.svg",
        "resource": {"memory": 268435456, "permission": {}},
        "plugins": {"tools": ["provider/tool.yaml"]},
        "meta": {"version": "0.0.1", "arch": ["amd64"], "runner": {"language": "python", "version": "3.12"}},
    }
    path = directory / f"{org}-{name}_{version}.difypkg"
    directory.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("manifest.yaml", yaml.safe_dump(manifest, sort_keys=False))
        z.writestr("main.py", "print('hello')\n")
        z.writestr("_assets/icon.svg", "<svg/>")
        z.writestr("provider/tool.yaml", "identity: {name: tool}\n")
        if filler:
            z.writestr("filler.bin", filler, compress_type=zipfile.ZIP_STORED)
    return path


def run(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


def publish(live: LiveRegistry, path: Path, *extra: str) -> Result:
    """``signery publish PATH`` with the signature files beside it named explicitly."""
    sigs: list[str] = []
    for suffix in (".sig", ".asc", ".signery.json"):
        beside = path.with_name(path.name + suffix)
        if beside.is_file():
            sigs += ["--signature", str(beside)]
    env = {"SIGNERY_REGISTRY_TOKEN": live.token}
    return run("publish", str(path), *sigs, "--registry", live.url, "--json", *extra, env=env)


@contextmanager
def live_registry(data_dir: Path, *, index_signer: Signer | None = None, **settings: Any) -> Iterator[LiveRegistry]:
    """A real uvicorn serving a registry on 127.0.0.1 (SQLite), with ``settings`` for RegistrySettings."""
    store = RegistryStore(RegistrySettings(data_dir=data_dir, **settings))
    token = store.create_token("ci")[1]
    extra: dict[str, Any] = {"index_signer": index_signer} if index_signer is not None else {}
    url, stop = serve_in_thread(create_app(store.settings, store=store, **extra))
    try:
        yield LiveRegistry(url, store, token)
    finally:
        stop()
        store.close()


def packets_of(sig: bytes) -> bytes:
    return dearmor(sig, source="sig")[0] if sig.lstrip().startswith(b"-----BEGIN") else sig
