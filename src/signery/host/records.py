"""Install records: what was installed, from which bytes, verified by whom (or why not).

A plugins directory holds each plugin's files in ``DIR/NAME/`` and signery's bookkeeping in ``DIR/.signery/``:
``store/NAME/record.json`` beside the exact package (and detached signatures) that were verified, so
``plugins check`` can re-verify them later against the current trust and policy.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .._internal.files import read_bounded
from ..errors import ConfigError, MalformedError, UsageError

STATE_DIR = ".signery"
STORE_DIR = "store"
RECORD_FILE = "record.json"
RECORD_SCHEMA = 1
MAX_RECORD_BYTES = 64 << 20  # a record lists every installed file; 100k files fit well within this
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")  # a directory name on every filesystem, no dot-files


def check_plugin_name(name: str, *, source: str) -> str:
    """A plugin name that is safe as a directory name, or ``malformed`` naming where it came from."""
    if not isinstance(name, str) or not NAME_RE.fullmatch(name) or name.endswith("."):
        raise MalformedError(
            f"{source}: plugin name {name!r} is not usable (letters, digits, '.', '_', '-'; at most 128)",
            subject=source,
        )
    return name


@dataclass(frozen=True)
class InstallRecord:
    """One installed plugin.

    Attributes:
        status: ``verified`` or ``unverified`` (installed under a policy that permits it; ``reason`` says why).
        signer_key_id / signer_key_name: the trusted key that verified it (the first, when several did).
        files: SHA-256 (hex) of every installed file, by path relative to the plugin directory.
    """

    name: str
    version: str
    kind: str
    status: str
    sha256: str
    size: int
    package_file: str
    installed_at: datetime
    author: str | None = None
    reason: str | None = None
    message: str = ""
    signer_key_id: str | None = None
    signer_key_name: str | None = None
    signature_format: str | None = None
    category: str | None = None
    signature_files: tuple[str, ...] = ()
    source: str = ""
    files: dict[str, str] = field(default_factory=dict)

    def to_dict(self, *, with_files: bool = True) -> dict[str, Any]:
        d: dict[str, Any] = {
            "schema": RECORD_SCHEMA,
            "name": self.name,
            "version": self.version,
            "kind": self.kind,
            "author": self.author,
            "status": self.status,
            "reason": self.reason,
            "message": self.message,
            "signer_key_id": self.signer_key_id,
            "signer_key_name": self.signer_key_name,
            "signature_format": self.signature_format,
            "category": self.category,
            "sha256": self.sha256,
            "size": self.size,
            "package_file": self.package_file,
            "signature_files": list(self.signature_files),
            "source": self.source,
            "installed_at": self.installed_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        }
        if with_files:
            d["files"] = dict(self.files)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any], *, source: str) -> InstallRecord:
        try:
            if d.get("schema") != RECORD_SCHEMA:
                raise ValueError(f"unknown schema {d.get('schema')!r}")
            files = d.get("files", {})
            if not isinstance(files, dict):
                raise ValueError("files must be an object")
            return cls(
                name=check_plugin_name(str(d["name"]), source=source),
                version=str(d["version"]),
                kind=str(d["kind"]),
                status=str(d["status"]),
                sha256=str(d["sha256"]),
                size=int(d["size"]),
                package_file=_plain_name(str(d["package_file"])),
                installed_at=datetime.fromisoformat(str(d["installed_at"]).replace("Z", "+00:00")),
                author=d.get("author"),
                reason=d.get("reason"),
                message=str(d.get("message", "")),
                signer_key_id=d.get("signer_key_id"),
                signer_key_name=d.get("signer_key_name"),
                signature_format=d.get("signature_format"),
                category=d.get("category"),
                signature_files=tuple(_plain_name(str(s)) for s in d.get("signature_files", [])),
                source=str(d.get("source", "")),
                files={str(k): str(v) for k, v in files.items()},
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"install record {source} is damaged: {exc}", subject=source) from None


def _plain_name(name: str) -> str:
    # Records name files inside their own store directory only; anything else is a damaged or forged record.
    if not name or "/" in name or "\\" in name or name in (".", ".."):
        raise ValueError(f"bad file name {name!r}")
    return name


def store_root(plugins_dir: Path) -> Path:
    return Path(plugins_dir) / STATE_DIR / STORE_DIR


def read_record(plugins_dir: Path, name: str) -> InstallRecord | None:
    """The record of plugin ``name``, or ``None`` when it is not installed."""
    path = store_root(plugins_dir) / name / RECORD_FILE
    try:
        raw = read_bounded(path, MAX_RECORD_BYTES, what="install record", error=ConfigError)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError(f"install record {path} cannot be read: {exc.strerror}", subject=str(path)) from None
    try:
        doc = json.loads(raw)
    except ValueError:
        raise ConfigError(f"install record {path} is not JSON", subject=str(path)) from None
    if not isinstance(doc, dict):
        raise ConfigError(f"install record {path} is damaged", subject=str(path))
    record = InstallRecord.from_dict(doc, source=str(path))
    if record.name != name:
        raise ConfigError(f"install record {path} names another plugin ({record.name})", subject=str(path))
    return record


def list_records(plugins_dir: Path) -> list[InstallRecord]:
    """Every installed plugin's record, by name.

    A plugins directory that does not exist holds no plugins (a refused first install leaves none behind); a path
    that exists but is not a directory is a usage error.
    """
    root = store_root(plugins_dir)
    if not Path(plugins_dir).exists():
        return []
    if not Path(plugins_dir).is_dir():
        raise UsageError(f"plugins directory {plugins_dir} is not a directory", subject=str(plugins_dir))
    if not root.is_dir():
        return []
    out = []
    for child in sorted(root.iterdir()):
        if child.name.startswith(".") or not NAME_RE.fullmatch(child.name):
            continue  # an interrupted swap's leftovers, cleaned up by the next install
        record = read_record(plugins_dir, child.name)
        if record is not None:
            out.append(record)
    return out


def record_bytes(record: InstallRecord) -> bytes:
    return json.dumps(record.to_dict(), indent=2).encode() + b"\n"


__all__ = ["InstallRecord", "check_plugin_name", "list_records", "read_record", "record_bytes", "store_root"]
