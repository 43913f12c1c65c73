"""``signery server import-balena``: bring balenaSign's keys into signery's key store, under balenaSign's ids.

Two sources are read:

- what balenaSign's ``POST /export`` produces: a Fernet token over a tar.gz of its secrets directory, the Fernet key
  derived with PBKDF2-HMAC-SHA256 (100,000 iterations, 32 bytes, urlsafe base64) from the passphrase and a 16-byte
  salt. Accepted as balenaSign's JSON reply ``{"data": TOKEN, "salt": BASE64}`` or as the file its older versions
  wrote (``salt || token``);
- a copy of the secrets directory itself (``gpg/``, ``x509/``, ``rsa/``).

The archive is decrypted and read **in memory** (members are never extracted, links and odd paths are refused), so
no private key touches the disk unencrypted; each key is sealed at once under the master key, like every signery
key. What is imported:

- ``x509/<id>.crt`` + ``x509/<id>.key``: an x509 key with that very certificate, aliased as certificate id ``<id>``;
- ``rsa/<id>/private.pem``: an RSA key aliased as RSA id ``<id>``;
- ``gpg/``: each unprotected secret key in ``private-keys-v1.d/*.key`` (GnuPG's S-expression files, either form)
  whose public key is in ``pubring.kbx`` (or ``pubring.gpg``): an OpenPGP key with its original certificate (so
  its fingerprint and GRUB's embedded key stay valid), aliased by fingerprint and long key id.

Already imported ids are skipped, so an import can be run again. ESL/.auth files and NXP ``pki/`` trees are not
imported (lists are signed again by ``POST /secureboot/...``; HAB is not supported).
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import re
import struct
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509 as pyca_x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

from ..errors import MalformedError, SigneryError, UsageError
from ..keys import PrivateKey, algorithm_name
from .balena_store import AliasRow, add, gpg_aliases, key_name_for, normalise
from .keys import lifecycle
from .settings import MasterKey
from .storage import Database

ITERATIONS = 100_000
SALT_BYTES = 16
MAX_EXPORT_BYTES = 256 << 20  # a secrets directory is a few hundred KiB
MAX_MEMBER_BYTES = 16 << 20
MAX_MEMBERS = 10_000
_CERT_ID = re.compile(r"^[A-Za-z0-9._-]{1,100}$")


def derive_key(passphrase: bytes, salt: bytes) -> bytes:
    """balenaSign's Fernet key: urlsafe base64 of PBKDF2-HMAC-SHA256(passphrase, salt, 100,000, 32 bytes)."""
    kdf = PBKDF2HMAC(algorithm=hashes.SHA256(), length=32, salt=salt, iterations=ITERATIONS)
    return base64.urlsafe_b64encode(kdf.derive(passphrase))


def _salt(value: str) -> bytes:
    for decode in (lambda v: base64.b64decode(v, validate=True), bytes.fromhex, lambda v: base64.urlsafe_b64decode(v)):
        try:
            raw = decode(value)
        except (binascii.Error, ValueError):
            continue
        if raw:
            return raw
    raise MalformedError("the export's salt is neither base64 nor hex", subject="salt")


def decrypt_export(data: bytes, passphrase: str) -> bytes:
    """The tar.gz inside a balenaSign export (JSON ``{data, salt}``, or ``salt || token``).

    Raises:
        UsageError: a wrong passphrase (the Fernet token does not authenticate).
        MalformedError: not an export.
    """
    from cryptography.fernet import Fernet, InvalidToken

    if len(data) > MAX_EXPORT_BYTES:
        raise MalformedError("the export is too large to be balenaSign's secrets")
    stripped = data.strip()
    if stripped.startswith(b"{"):
        try:
            doc = json.loads(stripped)
            token = doc["data"].encode() if isinstance(doc["data"], str) else bytes(doc["data"])
            salt = _salt(str(doc["salt"]))
        except (ValueError, KeyError, TypeError, AttributeError):
            raise MalformedError("the export is JSON but not balenaSign's {data, salt}") from None
        if not token.startswith(b"gAAAAA"):  # a Fernet token, itself base64-encoded once more
            try:
                token = base64.b64decode(token, validate=True)
            except (binascii.Error, ValueError):
                raise MalformedError("the export's data is not a Fernet token") from None
    else:
        salt, token = data[:SALT_BYTES], data[SALT_BYTES:].strip()
    try:
        return Fernet(derive_key(passphrase.encode(), salt)).decrypt(token)
    except InvalidToken:
        raise UsageError(
            "the passphrase does not decrypt this export", hint="give the passphrase the export was made with"
        ) from None


def _safe(name: str) -> str | None:
    parts = [p for p in name.replace("\\", "/").split("/") if p not in ("", ".")]
    if not parts or any(p == ".." for p in parts):
        return None
    return "/".join(parts)


def files_from_tar(archive: bytes) -> dict[str, bytes]:
    """The regular files of a (gzip) tar, read in memory; links, devices and escaping paths are skipped."""
    out: dict[str, bytes] = {}
    try:
        with tarfile.open(fileobj=io.BytesIO(archive), mode="r:*") as tar:
            for i, member in enumerate(tar):
                if i >= MAX_MEMBERS:
                    raise MalformedError("the export holds too many files")
                name = _safe(member.name)
                if name is None or not member.isfile() or member.size > MAX_MEMBER_BYTES:
                    continue
                fh = tar.extractfile(member)
                if fh is not None:
                    out[name] = fh.read()
    except tarfile.TarError as exc:
        raise MalformedError(f"the export is not a tar archive: {exc}") from None
    return out


def files_from_dir(root: Path) -> dict[str, bytes]:
    """The files of a copy of balenaSign's secrets directory (``gpg/``, ``x509/``, ``rsa/``)."""
    root = Path(root)
    if not root.is_dir():
        raise UsageError(f"{root} is not a directory", subject=str(root))
    out: dict[str, bytes] = {}
    for top in ("gpg", "x509", "rsa"):
        base = root / top
        if not base.is_dir():
            continue
        for path in sorted(base.rglob("*")):
            if path.is_file() and not path.is_symlink() and path.stat().st_size <= MAX_MEMBER_BYTES:
                out[path.relative_to(root).as_posix()] = path.read_bytes()
    return out


# ---- GnuPG's files ------------------------------------------------------------------------------------------------


def _sexp(data: bytes) -> Any:
    """A canonical (``(3:rsa(1:n...))``) or advanced (``(rsa (n #00..#))``) S-expression as nested lists of bytes."""
    pos = 0
    n = len(data)

    def skip() -> None:
        nonlocal pos
        while pos < n and data[pos] in b" \t\r\n":
            pos += 1

    def item() -> Any:
        nonlocal pos
        skip()
        if pos >= n:
            raise MalformedError("a GnuPG key file ends early")
        c = data[pos]
        if c == 0x28:  # (
            pos += 1
            out: list[Any] = []
            while True:
                skip()
                if pos >= n:
                    raise MalformedError("a GnuPG key file ends early")
                if data[pos] == 0x29:
                    pos += 1
                    return out
                out.append(item())
        if 0x30 <= c <= 0x39:
            m = re.compile(rb"\d+").match(data, pos)
            assert m is not None
            if m.end() < n and data[m.end()] == 0x3A:  # canonical: LEN:BYTES
                length = int(m.group())
                start = m.end() + 1
                pos = start + length
                return data[start:pos]
        if c == 0x23:  # #hex#
            end = data.index(b"#", pos + 1)
            value = bytes.fromhex(data[pos + 1 : end].decode())
            pos = end + 1
            return value
        if c == 0x22:  # "string"
            end = data.index(b'"', pos + 1)
            value = data[pos + 1 : end]
            pos = end + 1
            return value
        m = re.compile(rb"[^\s()#\"]+").match(data, pos)
        if m is None:
            raise MalformedError("a GnuPG key file holds an unreadable S-expression")
        pos = m.end()
        return m.group()

    return item()


def gpg_private_key(data: bytes, *, source: str) -> rsa.RSAPrivateKey | None:
    """The RSA key of a ``private-keys-v1.d/*.key`` file; ``None`` for another algorithm.

    Raises:
        UsageError: a passphrase-protected key (balenaSign makes them with ``%no-protection``).
    """
    text = data
    if not data.startswith(b"("):  # the extended format: "Name: value" lines, the key under "Key:"
        m = re.search(rb"^Key:(.*?)(?=^\S|\Z)", data, re.S | re.M)
        if m is None:
            raise MalformedError(f"{source} is not a GnuPG private key file", subject=source)
        text = m.group(1)
    tree = _sexp(text)
    if not isinstance(tree, list) or not tree:
        raise MalformedError(f"{source} is not a GnuPG private key", subject=source)
    if tree[0] in (b"protected-private-key", b"shadowed-private-key"):
        raise UsageError(
            f"{source} is protected by a passphrase (or held on a card); export it unprotected", subject=source
        )
    if tree[0] != b"private-key" or len(tree) < 2 or tree[1][0] != b"rsa":
        return None
    params = {p[0].decode(): int.from_bytes(p[1], "big") for p in tree[1][1:] if isinstance(p, list) and len(p) == 2}
    try:
        e, d, p, q = params["e"], params["d"], params["p"], params["q"]
        pub = rsa.RSAPublicNumbers(e, params["n"])
        numbers = rsa.RSAPrivateNumbers(
            p, q, d, rsa.rsa_crt_dmp1(d, p), rsa.rsa_crt_dmq1(d, q), rsa.rsa_crt_iqmp(p, q), pub
        )
        return numbers.private_key()
    except (KeyError, ValueError):
        raise MalformedError(f"{source} is not a complete RSA private key", subject=source) from None


def keybox_keyblocks(data: bytes) -> list[bytes]:
    """The OpenPGP keyblocks of a GnuPG keybox (``pubring.kbx``): one per OpenPGP blob (type 2)."""
    out, pos = [], 0
    while pos + 16 <= len(data):
        length, kind = struct.unpack_from(">IB", data, pos)
        if length < 16 or pos + length > len(data):
            raise MalformedError("pubring.kbx is truncated or not a keybox")
        if kind == 2:
            offset, size = struct.unpack_from(">II", data, pos + 8)
            if offset + size > length:
                raise MalformedError("pubring.kbx has a keyblock outside its blob")
            out.append(data[pos + offset : pos + offset + size])
        pos += length
    return out


def pubring_keyblocks(data: bytes) -> list[bytes]:
    """The certificates of a ``pubring.gpg`` (packets, each certificate starting at a public-key packet)."""
    from ..openpgp._packets import iter_packets

    blocks: list[bytearray] = []
    pos = 0
    for packet in iter_packets(data, source="pubring.gpg", max_packets=100_000):
        raw = _frame(packet.tag, packet.body)
        if packet.tag == 6:
            blocks.append(bytearray())
        if blocks:
            blocks[-1] += raw
        pos += len(raw)
    return [bytes(b) for b in blocks]


def _frame(tag: int, body: bytes) -> bytes:
    n = len(body)
    if n < 192:
        head = bytes([n])
    elif n < 8384:
        n2 = n - 192
        head = bytes([(n2 >> 8) + 192, n2 & 0xFF])
    else:
        head = b"\xff" + n.to_bytes(4, "big")
    return bytes([0xC0 | tag]) + head + body


# ---- the import ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Found:
    """One key found in balenaSign's secrets."""

    kind: str  # gpg, x509, rsa
    alias: str
    private: PrivateKey = field(repr=False)
    certificate_pem: str | None = None
    openpgp_certificate: str | None = None
    openpgp_created: int | None = None
    fingerprint: str | None = None
    uid: str | None = None


@dataclass
class ImportReport:
    imported: list[str] = field(default_factory=list)  # "kind id -> key name"
    skipped: list[str] = field(default_factory=list)  # already there, or not importable (with why)


def find_keys(files: dict[str, bytes], report: ImportReport) -> list[Found]:
    """Every key in balenaSign's secrets (as relative path -> bytes)."""
    found: list[Found] = []
    for path in sorted(files):
        parts = path.split("/")
        if parts[0] == "x509" and len(parts) == 2 and parts[1].endswith(".crt"):
            cert_id = parts[1][: -len(".crt")]
            key_data = files.get(f"x509/{cert_id}.key")
            if key_data is None or not _CERT_ID.fullmatch(cert_id):
                report.skipped.append(f"x509 {cert_id}: no private key beside it, or an id signery refuses")
                continue
            cert = pyca_x509.load_pem_x509_certificate(files[path])
            private = serialization.load_pem_private_key(key_data, password=None)
            assert isinstance(private, rsa.RSAPrivateKey)
            if private.public_key().public_numbers() != cert.public_key().public_numbers():  # type: ignore[union-attr]
                report.skipped.append(f"x509 {cert_id}: the key does not match the certificate")
                continue
            pem = cert.public_bytes(serialization.Encoding.PEM).decode()
            found.append(Found("x509", cert_id, private, certificate_pem=pem))
        elif parts[0] == "rsa" and len(parts) == 3 and parts[2] == "private.pem":
            private = serialization.load_pem_private_key(files[path], password=None)
            if not isinstance(private, rsa.RSAPrivateKey) or not re.fullmatch(r"[0-9a-fA-F]{1,128}", parts[1]):
                report.skipped.append(f"rsa {parts[1]}: not an RSA key under a hex id")
                continue
            found.append(Found("rsa", parts[1].lower(), private))
    found += _gpg_keys(files, report)
    return found


def _gpg_keys(files: dict[str, bytes], report: ImportReport) -> list[Found]:
    from ..openpgp import armor
    from ..openpgp._certs import parse_certificate

    blocks: list[bytes] = []
    if "gpg/pubring.kbx" in files:
        blocks += keybox_keyblocks(files["gpg/pubring.kbx"])
    if "gpg/pubring.gpg" in files:
        blocks += pubring_keyblocks(files["gpg/pubring.gpg"])
    certs = []
    for block in blocks:
        try:
            certs.append(parse_certificate(block, source="gpg/pubring"))
        except SigneryError as err:
            report.skipped.append(f"gpg certificate: {err.message}")
    out: list[Found] = []
    for path in sorted(p for p in files if p.startswith("gpg/private-keys-v1.d/") and p.endswith(".key")):
        try:
            private = gpg_private_key(files[path], source=path)
        except SigneryError as err:
            report.skipped.append(f"{path}: {err.message}")
            continue
        if private is None:
            report.skipped.append(f"{path}: not an RSA key (GRUB takes RSA only)")
            continue
        n = private.public_key().public_numbers().n
        for cert in certs:
            comps = [cert.primary, *cert.subkeys]
            hit = next(
                (
                    c
                    for c in comps
                    if isinstance(c.key.public_key, rsa.RSAPublicKey) and c.key.public_key.public_numbers().n == n
                ),
                None,
            )
            if hit is None:
                continue
            if not hit.can_sign:
                report.skipped.append(f"{path}: key {hit.key.fingerprint} may not sign (an encryption subkey)")
                break
            out.append(
                Found(
                    "gpg",
                    hit.key.fingerprint.lower(),
                    private,
                    openpgp_certificate=armor(cert.public_packets, "PUBLIC KEY BLOCK"),
                    openpgp_created=int(hit.key.created.timestamp()),
                    fingerprint=hit.key.fingerprint,
                    uid=cert.primary_uid or (cert.uids[0] if cert.uids else None),
                )
            )
            break
        else:
            report.skipped.append(f"{path}: no public key for it in gpg/pubring")
    return out


def import_keys(db: Database, master: MasterKey, found: list[Found], report: ImportReport, *, caller: str) -> None:
    """Seal each key into the store (one transaction per key) and alias it; ids already known are skipped."""
    from .audit import AuditEvent, append

    for f in found:
        with db.session() as session:
            alias = normalise(f.kind, f.alias)
            if session.get(AliasRow, (f.kind, alias)) is not None:
                report.skipped.append(f"{f.kind} {f.alias}: imported already")
                continue
            name = key_name_for(f.kind, f.alias[-16:] if f.kind == "gpg" else f.alias)
            algorithm = algorithm_name(f.private.public_key())
            if f.kind == "x509":
                cert = pyca_x509.load_pem_x509_certificate((f.certificate_pem or "").encode())
                ca = _is_ca(cert)
                params: dict[str, Any] = {
                    "template": "root-ca" if ca else "code-signing",
                    "subject": cert.subject.rfc4514_string(),
                    "issuer": None,
                    "key_algorithm": algorithm,
                    "days": 7305,
                    "imported": "balena",
                }
                key_type = "x509"
            elif f.kind == "gpg":
                params = {"uid": f.uid or name, "key_algorithm": algorithm, "imported": "balena"}
                key_type = "openpgp-rsa-3072"
            else:
                params = {}
                key_type = algorithm
            key = lifecycle.create_imported(
                session,
                name=name,
                key_type=key_type,
                params=params,
                private=f.private,
                master=master,
                caller=caller,
                certificate_pem=f.certificate_pem,
                openpgp_certificate=f.openpgp_certificate,
                openpgp_created=f.openpgp_created,
                version_key_id=f.fingerprint,
            )
            ids = gpg_aliases(f.alias) if f.kind == "gpg" else [f.alias]
            for i in ids:
                add(session, f.kind, i, key.name)
            event = AuditEvent(
                caller, "balena.import", "ok", key_name=key.name, key_version=1, detail=f"{f.kind} {f.alias}"
            )
            append(session, [event])
            report.imported.append(f"{f.kind} {f.alias} -> {key.name}")


def _is_ca(cert: pyca_x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(pyca_x509.BasicConstraints).value.ca)
    except pyca_x509.ExtensionNotFound:
        return False


def import_balena(
    db: Database,
    master: MasterKey,
    *,
    export: bytes | None = None,
    passphrase: str | None = None,
    directory: Path | None = None,
    caller: str = "import-balena",
) -> ImportReport:
    """Import from an export (with its passphrase) or from a secrets directory; returns what was done."""
    if (export is None) == (directory is None):
        raise UsageError("give an export file or a secrets directory")
    if export is not None:
        if passphrase is None:
            raise UsageError("an export needs its passphrase")
        files = files_from_tar(decrypt_export(export, passphrase))
    else:
        assert directory is not None
        files = files_from_dir(directory)
    report = ImportReport()
    import_keys(db, master, find_keys(files, report), report, caller=caller)
    return report


__all__ = [
    "ImportReport",
    "decrypt_export",
    "derive_key",
    "files_from_dir",
    "files_from_tar",
    "gpg_private_key",
    "import_balena",
    "keybox_keyblocks",
]
