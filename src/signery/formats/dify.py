"""Dify plugin signatures (``.difypkg``), byte-compatible with the Dify plugin daemon.

The format, as ``langgenius/dify-plugin-daemon`` writes and checks it (``pkg/plugin_packager/signer`` and
``decoder/verifier.go``; see ``docs/formats/dify.md``):

- the signature lives in the ZIP archive comment as compact JSON with sorted keys,
  ``{"signature":"<standard base64>","time":<unix seconds>}``;
- the signed message is ``M = sha256(entry_1) || ... || sha256(entry_n) || ascii_decimal(time)`` over the raw
  contents of every file entry in central-directory order (names, sizes and modes are not covered);
- the signature is RSASSA-PKCS1-v1_5 with SHA-256 over ``M``;
- the signer appends ``.verification.dify.json`` = ``{"authorized_category":"..."}`` as the last entry before
  hashing. A verified package without it counts as category ``langgenius`` (the daemon's "historical reason").

What signery adds on top, without changing a byte of the format: the entry is replaced (not duplicated) on
re-signing; directory entries, which the daemon cannot read back, are dropped when signing; and a failed check
says *why*. The format carries no key id, but PKCS#1 v1.5 lets a verifier recover the signed digest with each
candidate key: when one key opens the signature but the digest differs, the package was changed after signing
(``tampered``); when no key opens it, the signer is not trusted (``unknown-key``).

Example::

    signer = FileSigner(load_private_key_file(Path("me.private.pem")))
    signed = sign(Path("plugin.difypkg"), signer, category="community")   # plugin.signed.difypkg
    result = verify(signed, trust=official_trust())
"""

from __future__ import annotations

__all__ = [
    "CATEGORIES",
    "FORMAT",
    "NAME",
    "VERIFICATION_ENTRY",
    "DifyFormat",
    "DifyOptions",
    "DifySignature",
    "PluginManifest",
    "default_output",
    "detect",
    "format_comment",
    "inspect",
    "official_trust",
    "parse_comment",
    "read_manifest",
    "sign",
    "verify",
]

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from .._fs import atomic_writer
from .._internal.parse import load_json
from ..archive import ZipArchive, rewrite_zip
from ..errors import MalformedError, Reason, UnsafeArchiveError, UsageError
from ..keys import Signer, load_public_key, short_id
from ..result import SignatureCheck, VerificationResult
from ..trust import Constraints, TrustSet
from ._base import EmbeddedFormat, Options, SignRequest, VerifyRequest
from ._common import standing
from ._sniff import zip_with_comment
from .rawrsa import rsa_candidates

NAME = "dify"
VERIFICATION_ENTRY = ".verification.dify.json"  # pkg/plugin_packager/consts/verification.go
CATEGORIES: tuple[str, ...] = ("langgenius", "partner", "community")
DEFAULT_CATEGORY = "langgenius"  # what the daemon assumes for a verified package without a verification entry
SUFFIX = ".difypkg"

# The Dify Marketplace ("official") public key, shipped as package data. Provenance: langgenius/dify-plugin-daemon
# @ bdb5642a, pkg/license/public_key/PUBLIC_KEY.pem, via tests/vectors/dify/official-public-key.pem (PEM
# "RSA PUBLIC KEY", PKCS#1, RSA-4096). Dify compiles it into the daemon; rotating it means shipping a new signery.
OFFICIAL_KEY_RESOURCE = "dify-official-public-key.pem"
OFFICIAL_KEY_NAME = "dify-marketplace"

MAX_COMMENT_JSON = 4096  # an RSA-4096 signature is ~684 base64 characters; the ZIP comment itself caps at 64 KiB
MAX_SIGNATURE_BYTES = 2048  # RSA-16384; anything longer is not a signature
MAX_VERIFICATION_BYTES = 4096  # {"authorized_category":"community"} is 36 bytes
_TIME_RE = re.compile(rb"-?[0-9]{1,19}")
# DER DigestInfo prefix for SHA-256 (RFC 8017 section 9.2, note 1): what PKCS#1 v1.5 wraps around the digest.
_SHA256_DIGEST_INFO = bytes.fromhex("3031300d060960864801650304020105000420")


@dataclass(frozen=True)
class DifySignature:
    """The parsed ZIP comment: the raw signature and the signer's own clock reading (not a trusted time)."""

    signature: bytes
    time: int

    @property
    def signed_at(self) -> datetime | None:
        try:
            return datetime.fromtimestamp(self.time, UTC)
        except (OverflowError, OSError, ValueError):
            return None


@dataclass(frozen=True)
class PluginManifest:
    """The identity a Dify package declares in ``manifest.yaml`` (empty strings when absent)."""

    author: str
    name: str
    version: str

    @property
    def qualified_name(self) -> str:
        """``author/name``, the form trust constraints match (``langgenius/*``)."""
        return f"{self.author}/{self.name}" if self.author else self.name


# -- the official key ------------------------------------------------------------------------------------------


def official_key_pem() -> bytes:
    from importlib import resources  # only here: importing it costs more than verifying a small plugin

    return resources.files("signery.data").joinpath(OFFICIAL_KEY_RESOURCE).read_bytes()


def official_trust() -> TrustSet:
    """A trust set holding only the Dify Marketplace key, trusted for the Dify format and any category."""
    public = load_public_key(official_key_pem(), source=OFFICIAL_KEY_RESOURCE)
    from ..trust import trusted_key_from_public

    entry = trusted_key_from_public(public, name=OFFICIAL_KEY_NAME, constraints=Constraints(formats=(NAME,)))
    return TrustSet([entry])


# -- parsing -----------------------------------------------------------------------------------------------------


def parse_comment(comment: bytes, *, source: str) -> DifySignature | None:
    """The Dify signature in a ZIP comment; ``None`` when the comment is not one (an unsigned package).

    Raises:
        MalformedError: the comment is a Dify signature object but its fields are unusable.
    """
    text = comment.strip()
    if not text.startswith(b"{") or len(text) > MAX_COMMENT_JSON:
        return None
    try:  # bounded: a 4 KiB comment can nest 2,000 levels deep
        doc = load_json(text, source=source, max_depth=4)
    except MalformedError:
        return None  # not a signature object the daemon (or anyone) reads: the package is unsigned
    if not isinstance(doc, dict) or "signature" not in doc:
        return None
    sig, when = doc.get("signature"), doc.get("time")
    # Go's json.Unmarshal into int64 accepts only integral numbers; bool is an int in Python, so exclude it.
    if not isinstance(sig, str) or not isinstance(when, int) or isinstance(when, bool):
        raise MalformedError(f"{source}: the Dify signature comment has a bad 'signature' or 'time'", subject=source)
    if not _TIME_RE.fullmatch(str(when).encode()):
        raise MalformedError(f"{source}: the Dify signature time {when} is out of range", subject=source)
    try:
        raw = base64.b64decode(sig, validate=True)
    except (binascii.Error, ValueError):
        raise MalformedError(f"{source}: the Dify signature is not valid base64", subject=source) from None
    if not raw or len(raw) > MAX_SIGNATURE_BYTES:
        raise MalformedError(f"{source}: the Dify signature has {len(raw)} bytes", subject=source)
    return DifySignature(raw, when)


def format_comment(signature: bytes, when: int) -> bytes:
    """The comment exactly as Go's ``json.Marshal`` writes the daemon's map (sorted keys, no spaces)."""
    return json.dumps(
        {"signature": base64.b64encode(signature).decode("ascii"), "time": when}, separators=(",", ":")
    ).encode()


def verification_entry(category: str) -> bytes:
    """``.verification.dify.json`` exactly as ``json.Marshal(Verification{...})`` writes it."""
    return json.dumps({"authorized_category": category}, separators=(",", ":")).encode()


def read_category(archive: ZipArchive) -> tuple[str, bool]:
    """The category the package claims and whether it was stated (``False``: the daemon's implicit default)."""
    entry = archive.get(VERIFICATION_ENTRY)
    if entry is None:
        return DEFAULT_CATEGORY, False
    where = f"{archive.path}:{VERIFICATION_ENTRY}"
    doc = load_json(archive.read(entry, max_size=MAX_VERIFICATION_BYTES), source=where, max_depth=4)
    category = doc.get("authorized_category") if isinstance(doc, dict) else None
    if not isinstance(category, str):
        raise MalformedError(f"{where} has no 'authorized_category'", subject=where)
    return category, True


def read_manifest(archive: ZipArchive) -> PluginManifest | None:
    """``manifest.yaml``'s author, name and version, or ``None`` when the package has no Dify manifest at its root.

    Read by the one manifest reader (:mod:`signery.package`): bounded, no YAML aliases, string fields only.

    Raises:
        MalformedError: the manifest cannot be read, or its name, version or author is not a string.
        UnsafeArchiveError: the package holds several manifests that readers could choose between.
    """
    from ..package import manifest_from_zip  # PyYAML takes ~50 ms to import: only a package with a manifest pays

    found = manifest_from_zip(archive)
    if found is None or found.kind != "dify" or found.root:
        return None
    return PluginManifest(author=(found.author or "").strip(), name=found.name.strip(), version=found.version.strip())


def _file_digests(
    archive: ZipArchive, *, exclude: tuple[str, ...] = (), progress: Callable[[int], None] | None = None
) -> bytes:
    """The SHA-256 of every file entry's content, in archive order, concatenated.

    The daemon walks zip.Reader.File; directory entries carry no content and are never written by its packager.
    """
    return b"".join(d["sha256"] for _, d in archive.hash_files(["sha256"], exclude=exclude, progress=progress))


def signed_message(archive: ZipArchive, when: int, *, progress: Callable[[int], None] | None = None) -> bytes:
    """``M``: the SHA-256 of each file entry's content in order, then the decimal time."""
    return _file_digests(archive, progress=progress) + str(when).encode("ascii")


# -- signing -----------------------------------------------------------------------------------------------------


def default_output(subject: Path) -> Path:
    """``foo.difypkg`` -> ``foo.signed.difypkg``, the name ``dify signature sign`` gives."""
    subject = Path(subject)
    if subject.suffix:
        return subject.with_name(f"{subject.stem}.signed{subject.suffix}")
    return subject.with_name(f"{subject.name}.signed")


def _sign(subject: Path, signer: Signer, request: SignRequest) -> Path:
    """Write a Dify-signed copy of ``subject`` (default ``PKG.signed.difypkg``) and return its path.

    Kept entries are copied byte for byte; an existing ``.verification.dify.json`` is replaced, directory entries
    are dropped, and the new verification entry is appended last. The signer sees only ``sha256(M)``.

    Raises:
        UsageError: an unknown category (case-sensitive, as the daemon compares it) or a non-RSA key.
        UnsafeArchiveError / MalformedError: the package itself is refused by the strict reader.
    """
    if not isinstance(signer.public_key(), rsa.RSAPublicKey):
        raise UsageError(
            "Dify signatures are RSA (PKCS#1 v1.5, SHA-256); this key is not RSA",
            subject=short_id(signer.key_id),
            hint="signery keygen NAME --format dify",
        )
    when = int((request.now or datetime.now(UTC)).timestamp())
    out = request.target(default_output(subject))
    added = verification_entry(request.options.category)
    with ZipArchive.open(subject) as archive:
        drop = [e.name for e in archive.entries if e.is_dir or e.name == VERIFICATION_ENTRY]
        digests = _file_digests(archive, exclude=(VERIFICATION_ENTRY,), progress=request.progress)
        message = digests + hashlib.sha256(added).digest() + str(when).encode("ascii")
        signature = signer.sign_digest(hashlib.sha256(message).digest(), hash_name="sha256", rsa_padding="pkcs1v15")
        with atomic_writer(out) as fh:
            rewrite_zip(
                archive, fh, drop=drop, add=[(VERIFICATION_ENTRY, added)], comment=format_comment(signature, when)
            )
    return out


# -- verification ------------------------------------------------------------------------------------------------


def _recover_digest(public: rsa.RSAPublicKey, signature: bytes) -> bytes | None:
    """The SHA-256 digest ``signature`` carries under ``public``, or ``None`` if this key did not make it."""
    if len(signature) != (public.key_size + 7) // 8:
        return None
    try:
        info = public.recover_data_from_signature(signature, padding.PKCS1v15(), None)
    except (InvalidSignature, ValueError):
        return None
    if len(info) != len(_SHA256_DIGEST_INFO) + 32 or not info.startswith(_SHA256_DIGEST_INFO):
        return None
    return info[len(_SHA256_DIGEST_INFO) :]


def _refuse_directory_entries(archive: ZipArchive) -> None:
    """The Dify daemon cannot install a package that holds a directory entry ("read provider: is a directory"),
    so no Dify verdict may call one valid. ``sign`` drops them."""
    for entry in archive.entries:
        if entry.is_dir:
            raise UnsafeArchiveError(
                f"{archive.path}: directory entry {entry.name!r}; the Dify daemon refuses packages holding directory "
                "entries",
                subject=entry.name,
                hint="signery sign --format dify writes a copy without them",
            )


def _verify(subject: Path, request: VerifyRequest) -> VerificationResult:
    """Check the Dify signature of ``subject`` against the RSA keys in ``trust``.

    ``signature`` is ignored: Dify signatures are embedded in the package, never detached. The result has one
    :class:`SignatureCheck` (a package carries one Dify signature) whose ``claims`` hold the category, the plugin's
    ``author/name`` and version, and, when the check fails, ``candidates``: each trusted RSA key tried and what it
    said.
    """
    where = str(subject)
    with ZipArchive.open(subject) as archive:
        _refuse_directory_entries(archive)
        parsed = parse_comment(archive.comment, source=where)
        if parsed is None:
            return request.result(subject)
        try:
            category, stated = read_category(archive)
            category_error: str | None = None
        except MalformedError as exc:  # judged only if the signature holds: a changed entry is tampering first
            category, stated, category_error = None, True, exc.message
        try:
            manifest = read_manifest(archive)
        except MalformedError as exc:  # likewise: a broken manifest of a package that was changed is tampering
            manifest, category_error = None, category_error or exc.message
        digest = hashlib.sha256(signed_message(archive, parsed.time, progress=request.progress)).digest()
    claims: dict[str, Any] = {"category": category, "category_stated": stated, "time": parsed.time}
    if manifest is not None:
        claims.update(name=manifest.qualified_name, author=manifest.author, plugin=manifest.name)
        claims["version"] = manifest.version
    candidates: list[dict[str, str]] = []
    check: SignatureCheck | None = None
    for entry, public in rsa_candidates(request.trust):
        recovered = _recover_digest(public, parsed.signature)
        if recovered is None:
            candidates.append({"key_id": entry.key_id, "key_name": entry.name, "outcome": "not-this-key"})
            continue
        if recovered != digest:
            candidates.append({"key_id": entry.key_id, "key_name": entry.name, "outcome": Reason.TAMPERED.value})
            check = check or SignatureCheck(
                NAME,
                entry.key_id,
                Reason.TAMPERED,
                key_name=entry.name,
                detail=f"{subject.name} was signed by {entry.name} ({entry.short_id}) but its contents or signing "
                "time changed afterwards",
                subject=where,
                signed_at=parsed.signed_at,
            )
            continue
        label = f"{entry.name} ({entry.short_id})"
        problem = standing(entry, now=request.now, fmt=NAME, claims=claims, label=label)
        if category_error and (problem is None or problem[0] is Reason.POLICY_VIOLATION):
            problem = Reason.MALFORMED, f"signed by {label}, but {category_error}"
        reason, detail = problem or (None, f"signed by {label}, category {category}")
        candidates.append({"key_id": entry.key_id, "key_name": entry.name, "outcome": str(reason or "valid")})
        found = SignatureCheck(
            NAME,
            entry.key_id,
            reason,
            key_name=entry.name,
            detail=detail,
            subject=entry.key_id if reason else None,
            signed_at=parsed.signed_at,
        )
        if check is None or (check.reason is not None and reason is None):
            check = found
    if check is None:
        tried = ", ".join(f"{c['key_name']} ({short_id(c['key_id'])})" for c in candidates) or "none"
        check = SignatureCheck(
            NAME,
            None,
            Reason.UNKNOWN_KEY,
            detail=f"{subject.name} is signed by a key that is not trusted (RSA keys tried: {tried})",
            subject=where,
            signed_at=parsed.signed_at,
        )
    check = SignatureCheck(
        check.format,
        check.key_id,
        check.reason,
        key_name=check.key_name,
        detail=check.detail,
        subject=check.subject,
        signed_at=check.signed_at,
        # Which keys were tried matters when nothing verified; on success it would only add noise.
        claims={**claims, "candidates": candidates} if check.reason is not None else claims,
    )
    return request.result(subject, check)


# -- detection and inspection ------------------------------------------------------------------------------------


def _tail_comment(subject: Path) -> bytes | None:
    """The ZIP comment read from the file's tail without validating the archive (cheap, for :func:`detect`)."""
    try:
        with Path(subject).open("rb") as fh:
            fh.seek(0, 2)
            size = fh.tell()
            start = max(0, size - 22 - 0xFFFF)
            fh.seek(start)
            tail = fh.read()
    except OSError:
        return None
    pos = tail.rfind(b"PK\x05\x06")
    while pos >= 0:
        if pos + 22 <= len(tail):
            length = int.from_bytes(tail[pos + 20 : pos + 22], "little")
            if pos + 22 + length == len(tail):
                return tail[pos + 22 :]
        pos = tail.rfind(b"PK\x05\x06", 0, pos)
    return None


def _detect(subject: Path, signature: Path | None) -> bool:
    """Whether ``subject`` is a ZIP whose comment is a Dify signature object (does not verify it)."""
    comment = _tail_comment(subject)
    if not comment:
        return False
    try:
        return parse_comment(comment, source=str(subject)) is not None
    except MalformedError:
        return True  # a broken Dify signature is still a Dify signature; verify reports what is wrong with it


def _inspect(subject: Path, signature: Path | None) -> dict[str, Any]:
    """What the Dify signature says (time, category, plugin), without judging trust."""
    with ZipArchive.open(subject) as archive:
        parsed = parse_comment(archive.comment, source=str(subject))
        manifest = read_manifest(archive)
        info: dict[str, Any] = {
            "format": NAME,
            "subject": str(subject),
            "signed": parsed is not None,
            "entries": len(archive.files),
            "verification_entry": archive.get(VERIFICATION_ENTRY) is not None,
            "plugin": None
            if manifest is None
            else {"author": manifest.author, "name": manifest.name, "version": manifest.version},
        }
        if parsed is not None:
            category, stated = read_category(archive)
            signed_at = parsed.signed_at
            info.update(
                time=parsed.time,
                signed_at=signed_at.isoformat().replace("+00:00", "Z") if signed_at else None,
                category=category,
                category_stated=stated,
                signature_bytes=len(parsed.signature),
            )
    return info


# -- the Format ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DifyOptions(Options):
    """Signing options of the Dify format: the category the verification entry states."""

    category: str = DEFAULT_CATEGORY

    def __post_init__(self) -> None:
        if self.category not in CATEGORIES:
            raise UsageError(
                f"unknown Dify category {self.category!r}; choose one of {', '.join(CATEGORIES)} (lowercase)",
                subject=self.category,
            )


class DifyFormat(EmbeddedFormat):
    """Dify's ``.difypkg`` signature: RSA over every file's digest, kept in the ZIP comment."""

    name = NAME
    summary = "Dify's .difypkg signature (RSA, in the ZIP comment), written to X.signed.difypkg"
    options_type = DifyOptions

    def may_carry(self, subject: Path) -> bool:
        return zip_with_comment(subject)

    def default_trust(self) -> TrustSet:
        return official_trust()

    def default_output(self, subject: Path, options: Options) -> Path:
        return default_output(subject)

    def suits(self, subject: Path, signer: Signer) -> bool:
        return Path(subject).suffix.lower() == SUFFIX and isinstance(signer.public_key(), rsa.RSAPublicKey)


FORMAT = DifyFormat(_sign, _verify, _detect, _inspect)
sign, verify, detect, inspect = FORMAT.sign_kw, FORMAT.verify, FORMAT.detect, FORMAT.inspect
