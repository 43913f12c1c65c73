"""signery's native signature format: DSSE envelopes around in-toto Statements over every file of a package.

A signature is a DSSE envelope (payloadType ``application/vnd.in-toto+json``) whose payload is an in-toto
Statement v1 in RFC 8785 canonical JSON. Its subjects are every file of the package in package order (ZIP
central-directory order, or sorted paths for a directory), each with its digest; the predicate records when and
by which key it was signed, and the signer's claims (name, version, category...). Several independent envelopes
can sit on one package; adding one never touches another.

Where signatures live:

- ZIP-based packages carry them in one reserved entry, :data:`RESERVED_ENTRY`, appended last and excluded from
  the subjects;
- anything else (a file, a directory, or a ZIP with ``detached=True``) gets ``<path>.signery.json`` beside it.

The byte-level specification is ``docs/formats/native.md``.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import stat
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

from .._fs import atomic_writer
from .._internal.parse import load_json
from ..archive import ZipArchive, _fastzip, check_entry_name, is_zip, rewrite_zip
from ..digests import DEFAULT_DIGEST, DIGEST_ALGORITHMS, check_algorithm, hash_file
from ..errors import MalformedError, Reason, SigneryError, UnsafeArchiveError, UsageError
from ..keys import Signer, algorithm_name, verify_signature
from ..result import SignatureCheck, VerificationResult
from ..trust import TrustedKey, TrustSet

NAME = "native"
PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://signery.dev/package-signature/v1"
DOCUMENT_MEDIA_TYPE = "application/vnd.signery.signatures.v1+json"
RESERVED_ENTRY = ".signery/signatures.json"
DETACHED_SUFFIX = ".signery.json"

MAX_ENVELOPES = 16  # more independent signatures than any real release process makes
# A document's size is bounded by what the package can need before a byte of it is inflated or parsed: per
# envelope, a few KiB of signatures and predicate plus the base64 of one subject per file. A signature entry of a
# small plugin that inflates to 64 MiB is refused at its declared size (the review's memory amplification).
_ENVELOPE_OVERHEAD = 16 << 10  # keyids, signatures (an RSA-4096 or ML-DSA one is a few KiB), predicate, claims
_SUBJECT_OVERHEAD = 200  # {"digest":{"sha512":"<128 hex>"},"name":""} and a separator
MAX_DOCUMENT_BYTES = 256 << 20  # the absolute ceiling (a detached document of a 100,000-file package is ~20 MB)
_DOCUMENT_KEYS = frozenset({"mediaType", "envelopes"})
_ENVELOPE_KEYS = frozenset({"payloadType", "payload", "signatures"})
_SIGNATURE_KEYS = frozenset({"keyid", "sig"})


def document_limit(names: Iterable[str]) -> int:
    """The largest signature document a package with these file names can need (``MAX_ENVELOPES`` envelopes)."""
    subjects = sum(len(n.encode()) + _SUBJECT_OVERHEAD for n in names)
    return min(MAX_DOCUMENT_BYTES, MAX_ENVELOPES * (_ENVELOPE_OVERHEAD + (subjects + 1024) * 4 // 3))
MAX_SIGS_PER_ENVELOPE = 16
MAX_CLAIMS = 64  # claims are a handful of short facts, not a data store
MAX_CLAIM_LEN = 1024
MAX_DIR_FILES = 100_000  # the same bound as ZIP entries


# -- the model -----------------------------------------------------------------------------------------------------


class Subject(NamedTuple):
    """One file of a package: its normalised relative path and digests (hex, by algorithm)."""

    name: str
    digest: Mapping[str, str]


@dataclass(frozen=True)
class Statement:
    """A parsed, validated in-toto Statement as signery writes it."""

    subjects: tuple[Subject, ...]
    signed_at: datetime
    key_id: str
    digest_algorithm: str
    package_kind: str
    claims: Mapping[str, str] = field(default_factory=dict)

    def to_payload(self) -> bytes:
        doc: dict[str, Any] = {
            "_type": STATEMENT_TYPE,
            "subject": [{"name": s.name, "digest": dict(s.digest)} for s in self.subjects],
            "predicateType": PREDICATE_TYPE,
            "predicate": {
                "signedAt": _iso(self.signed_at),
                "keyId": self.key_id,
                "digestAlgorithm": self.digest_algorithm,
                "packageKind": self.package_kind,
                "claims": dict(self.claims),
            },
        }
        import rfc8785  # only signing writes statements; verification never needs it

        return bytes(rfc8785.dumps(doc))  # type: ignore[arg-type,unused-ignore]

    @classmethod
    def from_payload(cls, payload: bytes) -> Statement:
        try:
            doc = json.loads(payload)
        except (ValueError, RecursionError) as exc:
            raise MalformedError(f"statement is not JSON: {exc}") from None
        if not isinstance(doc, dict) or doc.get("_type") != STATEMENT_TYPE:
            raise MalformedError("payload is not an in-toto Statement v1")
        if doc.get("predicateType") != PREDICATE_TYPE:
            raise MalformedError(f"unknown predicate type {doc.get('predicateType')!r}")
        pred = doc.get("predicate")
        subjects = doc.get("subject")
        if not isinstance(pred, dict) or not isinstance(subjects, list):
            raise MalformedError("statement lacks a predicate or subjects")
        alg = pred.get("digestAlgorithm")
        if alg not in DIGEST_ALGORITHMS:
            raise MalformedError(f"unsupported digest algorithm {alg!r}")
        try:  # the common case in one pass (a package may have 100,000 files); the loop below explains failures
            pairs = [(s["name"], s["digest"][alg]) for s in subjects]
            valid = all(type(n) is str and type(v) is str for n, v in pairs)
        except (TypeError, KeyError):
            valid = False
        if not valid:
            _explain_subjects(subjects, alg)
        new = tuple.__new__
        parsed = [new(Subject, (n, {alg: v})) for n, v in pairs]
        claims = pred.get("claims", {})
        if not isinstance(claims, dict) or not all(isinstance(v, str) for v in claims.values()):
            raise MalformedError("claims must be an object of strings")
        try:
            signed_at = datetime.fromisoformat(str(pred.get("signedAt")).replace("Z", "+00:00"))
        except ValueError:
            raise MalformedError("statement has no valid signedAt time") from None
        return cls(
            subjects=tuple(parsed),
            signed_at=signed_at,
            key_id=str(pred.get("keyId", "")),
            digest_algorithm=alg,
            package_kind=str(pred.get("packageKind", "")),
            claims=claims,
        )


def _explain_subjects(subjects: list[Any], alg: str) -> None:
    """Raise ``malformed`` naming the first subject that is not ``{"name": str, "digest": {alg: str}}``."""
    for s in subjects:
        if not isinstance(s, dict) or not isinstance(s.get("name"), str) or not isinstance(s.get("digest"), dict):
            raise MalformedError("malformed subject in statement")
        if not isinstance(s["digest"].get(alg), str):
            raise MalformedError(f"subject {s['name']!r} lacks a {alg} digest")
    raise MalformedError("malformed subject in statement")  # pragma: no cover - the fast path found a problem


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 Pre-Authentication Encoding: what is actually signed."""
    t = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(t), t, len(payload), payload)


@dataclass(frozen=True)
class Envelope:
    """A DSSE envelope: the payload and its signatures (``keyid``, raw signature bytes)."""

    payload: bytes
    signatures: tuple[tuple[str, bytes], ...]
    payload_type: str = PAYLOAD_TYPE

    def to_dict(self) -> dict[str, Any]:
        return {
            "payloadType": self.payload_type,
            "payload": base64.b64encode(self.payload).decode(),
            "signatures": [{"keyid": k, "sig": base64.b64encode(s).decode()} for k, s in self.signatures],
        }

    @classmethod
    def from_dict(cls, d: Any) -> Envelope:
        if not isinstance(d, dict):
            raise MalformedError("envelope is not an object")
        if not d.keys() <= _ENVELOPE_KEYS:
            raise MalformedError(f"envelope has unknown members {sorted(d.keys() - _ENVELOPE_KEYS)}")
        ptype = d.get("payloadType")
        if ptype != PAYLOAD_TYPE:
            raise MalformedError(f"unexpected DSSE payloadType {ptype!r}")
        sigs = d.get("signatures")
        if not isinstance(sigs, list) or not sigs or len(sigs) > MAX_SIGS_PER_ENVELOPE:
            raise MalformedError("envelope must carry 1 to 16 signatures")
        try:
            payload = binascii.a2b_base64(str(d.get("payload", "")), strict_mode=True)
            parsed = tuple(
                (str(s["keyid"]).lower(), binascii.a2b_base64(str(s["sig"]), strict_mode=True))
                for s in sigs
                if isinstance(s, dict)
            )
        except (KeyError, ValueError):  # binascii.Error, or a non-ASCII string
            raise MalformedError("envelope has invalid base64 or lacks keyid/sig") from None
        if len(parsed) != len(sigs) or any(not s.keys() <= _SIGNATURE_KEYS for s in sigs):
            raise MalformedError("malformed signature entry in envelope (only 'keyid' and 'sig' are members)")
        return cls(payload, parsed)


@dataclass(frozen=True)
class SignatureDocument:
    """The file (or ZIP entry) holding all native envelopes of a package."""

    envelopes: tuple[Envelope, ...] = ()

    def to_bytes(self) -> bytes:
        doc = {"mediaType": DOCUMENT_MEDIA_TYPE, "envelopes": [e.to_dict() for e in self.envelopes]}
        return json.dumps(doc, indent=1, sort_keys=True).encode() + b"\n"

    @classmethod
    def from_bytes(cls, data: bytes, *, source: str, limit: int = MAX_DOCUMENT_BYTES) -> SignatureDocument:
        if len(data) > limit:
            raise MalformedError(
                f"{source}: signature document of {len(data)} bytes; this package needs at most {limit}",
                subject=source,
            )
        doc = load_json(data, source=source, max_depth=8)  # document > envelopes > envelope > signatures > entry
        if not isinstance(doc, dict) or doc.get("mediaType") != DOCUMENT_MEDIA_TYPE:
            raise MalformedError(f"{source} is not a signery signature document", subject=source)
        if not doc.keys() <= _DOCUMENT_KEYS:
            raise MalformedError(
                f"{source}: unknown members {sorted(doc.keys() - _DOCUMENT_KEYS)} in the signature document",
                subject=source,
            )
        envs = doc.get("envelopes")
        if not isinstance(envs, list) or len(envs) > MAX_ENVELOPES:
            raise MalformedError(f"{source}: 'envelopes' must be a list of at most {MAX_ENVELOPES}", subject=source)
        return cls(tuple(Envelope.from_dict(e) for e in envs))

    def adding(self, envelope: Envelope) -> SignatureDocument:
        if len(self.envelopes) >= MAX_ENVELOPES:
            raise UsageError(f"a package carries at most {MAX_ENVELOPES} native signatures")
        return SignatureDocument((*self.envelopes, envelope))


# -- packages: what is signed ---------------------------------------------------------------------------------


def package_kind(subject: Path) -> str:
    """``directory``, ``zip`` (any ZIP, however its signature is stored: the strict reader judges it) or ``file``."""
    if subject.is_dir():
        return "directory"
    return "zip" if is_zip(subject) else "file"


def detached_path(subject: Path) -> Path:
    return subject.with_name(subject.name + DETACHED_SUFFIX)


def _has_dify_signature(archive: ZipArchive) -> bool:
    # A Dify signature covers every entry; embedding ours would break it, so such packages get a detached one.
    return archive.comment.lstrip().startswith(b'{"signature"')


def compute_subjects(
    subject: Path,
    kind: str,
    algorithms: Iterable[str],
    *,
    archive: ZipArchive | None = None,
    progress: Callable[[int], None] | None = None,
) -> list[tuple[str, dict[str, bytes]]]:
    """Every file of the package with its digests, in package order; each byte is read once."""
    algs = tuple(dict.fromkeys(algorithms))
    if kind == "zip":
        assert archive is not None
        return [(e.name, d) for e, d in archive.hash_files(algs, exclude=(RESERVED_ENTRY,), progress=progress)]
    if kind == "directory":
        return [(rel, hash_file(p, algs, progress=progress)) for rel, p in _walk(subject)]
    return [(subject.name, hash_file(subject, algs, progress=progress))]


def _walk(root: Path) -> list[tuple[str, Path]]:
    """Regular files under ``root`` (sorted by path); links and special files are refused as unsafe."""
    out: list[tuple[str, Path]] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for name in (*dirnames, *filenames):
            full = Path(dirpath, name)
            mode = full.lstat().st_mode
            rel = full.relative_to(root).as_posix()
            if stat.S_ISLNK(mode):
                raise UnsafeArchiveError(f"{rel} is a symbolic link", subject=rel)
            if stat.S_ISDIR(mode):
                continue
            if not stat.S_ISREG(mode):
                raise UnsafeArchiveError(f"{rel} is a special file", subject=rel)
            check_entry_name(rel)
            out.append((rel, full))
            if len(out) > MAX_DIR_FILES:
                raise UnsafeArchiveError(f"directory holds more than {MAX_DIR_FILES} files", subject=str(root))
    out.sort(key=lambda item: item[0].encode())
    return out


def _read_document(subject: Path, kind: str, archive: ZipArchive | None, signature: Path | None) -> SignatureDocument:
    if signature is not None:
        return SignatureDocument.from_bytes(_read_bounded(signature), source=str(signature))
    if kind == "zip" and archive is not None:
        last = archive.entries[-1] if archive.entries else None  # where signery puts it
        entry = last if last is not None and last.name == RESERVED_ENTRY else archive.get(RESERVED_ENTRY)
        if entry is not None:
            limit = document_limit(e.name for e in archive.files if e.name != RESERVED_ENTRY)
            if entry.size > limit:  # judged on the declared size, before a byte is inflated
                raise MalformedError(
                    f"{RESERVED_ENTRY} declares {entry.size} bytes; a package of {len(archive.files) - 1} files "
                    f"needs at most {limit}",
                    subject=RESERVED_ENTRY,
                )
            return SignatureDocument.from_bytes(archive.read(entry, max_size=limit), source=RESERVED_ENTRY, limit=limit)
    sidecar = detached_path(subject)
    if sidecar.is_file():
        return SignatureDocument.from_bytes(_read_bounded(sidecar), source=str(sidecar))
    return SignatureDocument()


def _read_bounded(path: Path) -> bytes:
    with Path(path).open("rb") as fh:
        data = fh.read(MAX_DOCUMENT_BYTES + 1)
    if len(data) > MAX_DOCUMENT_BYTES:
        raise MalformedError(f"{path} is too large to be a signature document", subject=str(path))
    return data


def _open_kind(subject: Path) -> tuple[str, ZipArchive | None]:
    if not subject.exists():
        raise UsageError(f"{subject} does not exist", subject=str(subject))
    kind = package_kind(subject)
    return kind, ZipArchive.open(subject) if kind == "zip" else None


# -- signing ----------------------------------------------------------------------------------------------------


def _parse_claims(claims: Mapping[str, str] | None) -> dict[str, str]:
    out = dict(claims or {})
    if len(out) > MAX_CLAIMS:
        raise UsageError(f"at most {MAX_CLAIMS} claims")
    for k, v in out.items():
        if not k or len(k) > 64 or len(v) > MAX_CLAIM_LEN or not k.replace("-", "").replace("_", "").isalnum():
            raise UsageError(f"invalid claim {k!r}: keys are short identifiers, values at most {MAX_CLAIM_LEN} chars")
    return out


def sign(
    subject: Path,
    signer: Signer,
    *,
    output: Path | None = None,
    in_place: bool = False,
    detached: bool = False,
    digest: str = DEFAULT_DIGEST,
    claims: Mapping[str, str] | None = None,
    now: datetime | None = None,
    progress: Callable[[int], None] | None = None,
) -> Path:
    """Sign ``subject`` and write the result atomically; return the path written.

    ZIPs get a signed copy (``X.signed.zip``, or the same file with ``in_place``) carrying the signature entry;
    every other subject, and ZIPs with ``detached=True``, get ``<subject>.signery.json``. Existing signatures are
    kept: a further signature is a countersignature.
    """
    subject = Path(subject)
    check_algorithm(digest)
    claim_map = _parse_claims(claims)
    kind, archive = _open_kind(subject)
    try:
        embed = kind == "zip" and not detached
        if embed and archive is not None and _has_dify_signature(archive):
            embed = False  # keep the Dify signature valid: ours goes beside the package instead
        existing = _read_document(subject, kind, archive, None)
        if embed and archive is not None and archive.get(RESERVED_ENTRY) is None:
            existing = SignatureDocument()  # a sidecar next to a zip we embed into is not carried over
        subjects = compute_subjects(subject, kind, [digest], archive=archive, progress=progress)
        statement = Statement(
            subjects=tuple(Subject(name, {digest: d[digest].hex()}) for name, d in subjects),
            signed_at=now or datetime.now(UTC),
            key_id=signer.key_id,
            digest_algorithm=digest,
            package_kind=kind,
            claims=claim_map,
        )
        payload = statement.to_payload()
        # RSA signs with PSS (the DSSE/securesystemslib default); ECDSA with its curve's hash; Ed25519 is pure.
        raw_sig = signer.sign(pae(PAYLOAD_TYPE, payload), rsa_padding="pss")
        document = existing.adding(Envelope(payload, ((signer.key_id, raw_sig),)))
        if embed and archive is not None:
            target = Path(output) if output else (subject if in_place else _signed_name(subject))
            with atomic_writer(target, mode=0o644) as out:
                # No archive comment is carried over: nothing signs it, and readers may take it for structure.
                rewrite_zip(
                    archive, out, drop=[RESERVED_ENTRY], add=[(RESERVED_ENTRY, document.to_bytes())], comment=b""
                )
            return target
        target = Path(output) if output else detached_path(subject)
        with atomic_writer(target, mode=0o644) as out:
            out.write(document.to_bytes())
        return target
    finally:
        if archive is not None:
            archive.close()


def _signed_name(subject: Path) -> Path:
    stem, dot, ext = subject.name.rpartition(".")
    name = f"{stem}.signed.{ext}" if dot and stem else f"{subject.name}.signed"
    return subject.with_name(name)


# -- verification -------------------------------------------------------------------------------------------------


@dataclass
class _Candidate:
    envelope: Envelope
    key_id: str
    signature: bytes
    statement: Statement | None = None
    trusted: TrustedKey | None = None
    check: SignatureCheck | None = None
    subjects_json: bytes | None = None  # the statement's subject array, not yet parsed (see _split_payload)


def verify(
    subject: Path,
    *,
    trust: TrustSet,
    signature: Path | None = None,
    threshold: int = 1,
    now: datetime | None = None,
    progress: Callable[[int], None] | None = None,
) -> VerificationResult:
    """Check every native signature on ``subject`` against ``trust`` and the package's actual contents.

    The package is hashed only if some signature is by a trusted, usable key, and then only once, with every
    digest algorithm any such signature uses.
    """
    subject = Path(subject)
    when = now or datetime.now(UTC)
    kind, archive = _open_kind(subject)
    try:
        document = _read_document(subject, kind, archive, signature)
        candidates = [_Candidate(env, kid, sig) for env in document.envelopes for kid, sig in env.signatures]
        for c in candidates:
            c.check = _check_signature(c, trust, when)
        algs = {c.statement.digest_algorithm for c in candidates if c.check is None and c.statement}
        actual: dict[str, list[tuple[str, str]]] = {}
        if len(algs) == 1 and archive is not None:
            (alg,) = algs
            actual = {alg: archive.hex_digests(alg, exclude=(RESERVED_ENTRY,), progress=progress)}
        elif algs:
            listing = compute_subjects(subject, kind, sorted(algs), archive=archive, progress=progress)
            actual = {a: [(n, d[a].hex()) for n, d in listing] for a in algs}
        checks = []
        for c in candidates:
            if c.check is None:
                assert c.statement is not None and c.trusted is not None
                c.check = _check_contents(c, actual[c.statement.digest_algorithm], kind)
            checks.append(c.check)
        return VerificationResult(str(subject), tuple(checks), threshold=threshold)
    finally:
        if archive is not None:
            archive.close()


_SUBJECT_KEY = b',"subject":['
_PLAIN_NAMES = re.compile(r'[\x00-\x1f"\\]')  # characters RFC 8785 writes as escapes


def _split_payload(payload: bytes) -> tuple[bytes, bytes] | None:
    """Split a canonical statement into its head (up to the subject array) and the array's contents.

    In RFC 8785 form the subject array is the last member, so the payload is ``head + contents + "]}"``. Verifying
    a package of 100,000 files then needs no parse of its 100,000 subjects: :func:`_check_contents` writes the
    contents the package's files give and compares bytes. Parsing ``head + "]}"`` checks everything else, and, as
    JSON composes, a payload whose contents are the ones written parses to exactly those subjects. Any other
    layout (``None``) is parsed whole.
    """
    if not payload.endswith(b"]}"):
        return None
    at = payload.rfind(_SUBJECT_KEY)
    if at < 0:
        return None
    cut = at + len(_SUBJECT_KEY)
    return payload[:cut], payload[cut:-2]


def _subjects_json(have: Sequence[tuple[str, str]], alg: str) -> bytes | None:
    """The canonical JSON of the subject array's contents for ``have``, or ``None`` if a name needs escapes."""
    if _fastzip is not None:  # the accelerator writes the same bytes for plain ASCII names (tested differentially)
        fast = _fastzip.subjects_json(have, alg)
        if fast is not None:
            return fast
    return _subjects_json_py(have, alg)


def _subjects_json_py(have: Sequence[tuple[str, str]], alg: str) -> bytes | None:
    """The pure-Python writer, for any names, and the reference the accelerator's writer is tested against."""
    if _PLAIN_NAMES.search("/".join(n for n, _ in have)):
        return None
    return ",".join([f'{{"digest":{{"{alg}":"{h}"}},"name":"{n}"}}' for n, h in have]).encode()


def _fail(c: _Candidate, reason: Reason, detail: str, *, subject: str | None = None) -> SignatureCheck:
    st = c.statement
    return SignatureCheck(
        format=NAME,
        key_id=c.key_id,
        reason=reason,
        key_name=c.trusted.name if c.trusted else None,
        detail=detail,
        subject=subject if subject is not None else c.key_id,
        signed_at=st.signed_at if st else None,
        claims=dict(st.claims) if st else {},
    )


def _check_signature(c: _Candidate, trust: TrustSet, when: datetime) -> SignatureCheck | None:
    """Authenticity, trust and policy of one signature; ``None`` means "now compare the contents"."""
    c.statement = None
    split = _split_payload(c.envelope.payload)
    if split is not None:
        try:
            c.statement = Statement.from_payload(split[0] + b"]}")
            c.subjects_json = split[1]
        except MalformedError:
            pass  # not the canonical layout after all: parse the whole payload
    try:
        if c.statement is None:
            c.statement = Statement.from_payload(c.envelope.payload)
    except MalformedError as exc:
        c.statement = None
        return _fail(c, Reason.MALFORMED, f"signature payload: {exc.message}")
    c.trusted = trust.get(c.key_id)
    if c.trusted is None:
        return _fail(c, Reason.UNKNOWN_KEY, f"signed by unknown key {c.key_id}")
    if c.trusted.kind != "pkix":
        return _fail(c, Reason.UNKNOWN_KEY, f"key {c.trusted.name} is not a PKIX key")
    public = c.trusted.public_key()
    try:
        verify_signature(public, c.signature, pae(c.envelope.payload_type, c.envelope.payload), rsa_padding="pss")
    except SigneryError:
        return _fail(c, Reason.BAD_SIGNATURE, f"signature by {c.trusted.name} ({algorithm_name(public)}) is invalid")
    if c.statement.key_id != c.key_id:
        return _fail(c, Reason.BAD_SIGNATURE, "statement names a different signing key than the envelope")
    status = c.trusted.status_at(when)
    if status is Reason.REVOKED_KEY:
        return _fail(c, status, f"key {c.trusted.name} is revoked")
    if status is Reason.EXPIRED_KEY:
        assert c.trusted.expires is not None
        return _fail(c, status, f"key {c.trusted.name} expired at {_iso(c.trusted.expires)}")
    violation = c.trusted.constraints.violation(fmt=NAME, claims=c.statement.claims)
    if violation:
        return _fail(c, Reason.POLICY_VIOLATION, f"{c.trusted.name}: {violation}")
    return None


def _check_contents(c: _Candidate, have: list[tuple[str, str]], kind: str) -> SignatureCheck:
    """Compare the signed subjects with ``have``, the package's files and hex digests in the statement's algorithm."""
    st = c.statement
    assert st is not None and c.trusted is not None
    alg = st.digest_algorithm
    if c.subjects_json is not None and st.package_kind == kind:
        if c.subjects_json == _subjects_json(have, alg):
            return SignatureCheck(
                format=NAME, key_id=c.key_id, key_name=c.trusted.name, signed_at=st.signed_at, claims=dict(st.claims)
            )
        try:  # something differs: parse the subjects after all, to say what
            st = c.statement = Statement.from_payload(c.envelope.payload)
        except MalformedError as exc:
            return _fail(c, Reason.MALFORMED, f"signature payload: {exc.message}")
    signed = [(n, d[alg]) for n, d in st.subjects]
    if st.package_kind != kind:
        return _fail(c, Reason.TAMPERED, f"signed a {st.package_kind}, found a {kind}", subject=st.package_kind)
    if kind == "file":
        # A lone file is signed for its bytes; renaming the file does not change what was signed.
        if len(signed) != 1 or signed[0][1] != have[0][1]:
            return _fail(c, Reason.TAMPERED, f"{have[0][0]} differs from what was signed", subject=have[0][0])
    elif signed != have:
        name, detail = _first_difference(signed, have)
        return _fail(c, Reason.TAMPERED, detail, subject=name)
    return SignatureCheck(
        format=NAME,
        key_id=c.key_id,
        key_name=c.trusted.name,
        signed_at=st.signed_at,
        claims=dict(st.claims),
    )


def _first_difference(signed: list[tuple[str, str]], have: list[tuple[str, str]]) -> tuple[str, str]:
    signed_map, have_map = dict(signed), dict(have)
    for name, digest in signed:
        if name not in have_map:
            return name, f"file {name!r} was signed but is missing"
        if have_map[name] != digest:
            return name, f"file {name!r} differs from what was signed"
    for name, _ in have:
        if name not in signed_map:
            return name, f"file {name!r} is not covered by the signature (extra)"
    for (sn, _), (hn, _) in zip(signed, have, strict=False):
        if sn != hn:
            return hn, f"files are in a different order than signed (at {hn!r})"
    return "", "contents differ"


# -- detection and inspection -----------------------------------------------------------------------------------


def detect(subject: Path, *, signature: Path | None = None) -> bool:
    subject = Path(subject)
    if signature is not None:
        try:
            head = _read_bounded(signature)[:4096]
        except OSError:
            return False
        return DOCUMENT_MEDIA_TYPE.encode() in head
    if detached_path(subject).is_file():
        return True
    if subject.is_file() and is_zip(subject):
        with ZipArchive.open(subject) as archive:
            return archive.get(RESERVED_ENTRY) is not None
    return False


def inspect(subject: Path, *, signature: Path | None = None) -> dict[str, Any]:
    """The envelopes and what each says, without judging trust."""
    subject = Path(subject)
    kind, archive = _open_kind(subject)
    try:
        document = _read_document(subject, kind, archive, signature)
    finally:
        if archive is not None:
            archive.close()
    signatures = []
    for env in document.envelopes:
        try:
            st: Statement | None = Statement.from_payload(env.payload)
        except MalformedError:
            st = None
        for kid, _ in env.signatures:
            signatures.append(
                {
                    "format": NAME,
                    "key_id": kid,
                    "signed_at": _iso(st.signed_at) if st else None,
                    "claims": dict(st.claims) if st else {},
                    "digest_algorithm": st.digest_algorithm if st else None,
                    "subjects": len(st.subjects) if st else None,
                }
            )
    return {
        "subject": str(subject),
        "package_kind": kind,
        "envelopes": [e.to_dict() for e in document.envelopes],
        "signatures": signatures,
    }
