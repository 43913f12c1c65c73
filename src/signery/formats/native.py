"""signery's native signature format: DSSE envelopes around in-toto Statements over every file of a package.

A signature is a DSSE envelope (payloadType ``application/vnd.in-toto+json``) whose payload is an in-toto
Statement v1 in RFC 8785 canonical JSON. Its subjects are every file of the package, each with its digest, sorted
by the UTF-8 bytes of the file's name; the predicate records when and by which key it was signed, and the signer's
claims (name, version, category...). Several independent envelopes can sit on one package; adding one never
touches another.

What is signed is the package's files as a mapping of name to digest, not its container: a ZIP re-made by any
archiver, in any entry order and with any compression method, verifies as long as every file is the same (the
point of content addressing). Statements written before subjects were sorted list them in central-directory
order; they verify too, as does any order another implementation writes.

Where signatures live:

- ZIP-based packages carry them in one reserved entry, :data:`RESERVED_ENTRY`, appended last and excluded from
  the subjects;
- anything else (a file, a directory, or a ZIP with ``detached=True``) gets ``<path>.signery.json`` beside it.

The byte-level specification is ``docs/formats/native.md``.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .._fs import atomic_writer
from ..archive import ZipArchive, check_entry_name, is_zip, rewrite_zip
from ..digests import DEFAULT_DIGEST, check_algorithm, hash_file
from ..errors import MalformedError, Reason, SigneryError, UnsafeArchiveError, UsageError
from ..hybrid import HybridSigner
from ..keys import Signer, algorithm_name, verify_signature
from ..result import SignatureCheck, VerificationResult
from ..trust import TrustSet
from ._base import FormatBase, Options, SignRequest, VerifyRequest, beside
from ._native_hybrid import Candidate as _Candidate
from ._native_hybrid import combine as _combine_hybrid
from ._native_hybrid import half_key as _half_key
from ._native_statement import DOCUMENT_MEDIA_TYPE as DOCUMENT_MEDIA_TYPE
from ._native_statement import MAX_DOCUMENT_BYTES as MAX_DOCUMENT_BYTES
from ._native_statement import MAX_ENVELOPES as MAX_ENVELOPES
from ._native_statement import MAX_SIGS_PER_ENVELOPE as MAX_SIGS_PER_ENVELOPE
from ._native_statement import PAYLOAD_TYPE as PAYLOAD_TYPE
from ._native_statement import PREDICATE_TYPE as PREDICATE_TYPE
from ._native_statement import STATEMENT_TYPE as STATEMENT_TYPE
from ._native_statement import Envelope as Envelope
from ._native_statement import SignatureDocument as SignatureDocument
from ._native_statement import Statement as Statement
from ._native_statement import Subject as Subject
from ._native_statement import canonical_order as canonical_order
from ._native_statement import document_limit as document_limit
from ._native_statement import iso as _iso
from ._native_statement import pae as pae
from ._native_subjects import _Files as _Files
from ._native_subjects import _split_payload as _split_payload
from ._native_subjects import _subjects_json as _subjects_json
from ._native_subjects import _subjects_json_py as _subjects_json_py

NAME = "native"
RESERVED_ENTRY = ".signery/signatures.json"
DETACHED_SUFFIX = ".signery.json"
MAX_CLAIMS = 64  # claims are a handful of short facts, not a data store
MAX_CLAIM_LEN = 1024
MAX_DIR_FILES = 100_000  # the same bound as ZIP entries


# -- packages: what is signed ---------------------------------------------------------------------------------


def package_kind(subject: Path) -> str:
    """``directory``, ``zip`` (any ZIP, however its signature is stored: the strict reader judges it) or ``file``."""
    if subject.is_dir():
        return "directory"
    return "zip" if is_zip(subject) else "file"


def detached_path(subject: Path) -> Path:
    return beside(subject, DETACHED_SUFFIX)


def _carries_another_format(subject: Path) -> bool:
    """Whether the ZIP holds another format's embedded signature (Dify's, in its comment, covers every entry).

    Embedding ours rewrites the archive (without its comment), which would break that signature: such packages get
    a detached signature and stay byte for byte as they are. The formats registry says which formats embed.
    """
    from . import detect_formats, get_format

    return any(name != NAME and get_format(name).embeds for name in detect_formats(subject))


def compute_subjects(
    subject: Path,
    kind: str,
    algorithms: Iterable[str],
    *,
    archive: ZipArchive | None = None,
    progress: Callable[[int], None] | None = None,
) -> list[tuple[str, dict[str, bytes]]]:
    """Every file of the package with its digests, in package order (sorted for a directory); each byte is read once.

    The statement's order is :func:`canonical_order` (signing sorts); verification compares as a mapping.
    """
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


def _sign(subject: Path, signer: Signer, request: SignRequest) -> Path:
    """Sign ``subject`` and write the result atomically; return the path written.

    ZIPs get a signed copy (``X.signed.zip``, or the same file with ``in_place``) carrying the signature entry;
    every other subject, and ZIPs with ``detached=True``, get ``<subject>.signery.json``. Existing signatures are
    kept: a further signature is a countersignature.
    """
    o: NativeOptions = request.options
    digest, output, progress = o.digest, request.output, request.progress
    kind, archive = _open_kind(subject)
    hybrid = signer if isinstance(signer, HybridSigner) else None  # two signatures in one envelope (see docs)
    try:
        embed = kind == "zip" and not o.detached
        if embed and archive is not None and _carries_another_format(subject):
            embed = False  # keep the comment (and any signature in it) intact: ours goes beside the package
        existing = _read_document(subject, kind, archive, None)
        if embed and archive is not None and archive.get(RESERVED_ENTRY) is None:
            existing = SignatureDocument()  # a sidecar next to a zip we embed into is not carried over
        subjects = compute_subjects(subject, kind, [digest], archive=archive, progress=progress)
        statement = Statement(
            subjects=tuple(Subject(name, {digest: d[digest].hex()}) for name, d in canonical_order(subjects)),
            signed_at=request.now or datetime.now(UTC),
            key_id=signer.key_id,
            digest_algorithm=digest,
            package_kind=kind,
            claims=dict(o.claims),
            key_ids=hybrid.half_key_ids if hybrid else (),
        )
        payload = statement.to_payload()
        # RSA signs with PSS (the DSSE/securesystemslib default); ECDSA with its curve's hash; Ed25519 and ML-DSA
        # are pure. A hybrid bundle signs with both of its keys, Ed25519 first.
        message = pae(PAYLOAD_TYPE, payload)
        sigs = hybrid.sign_all(message) if hybrid else ((signer.key_id, signer.sign(message, rsa_padding="pss")),)
        document = existing.adding(Envelope(payload, sigs))
        if embed and archive is not None:
            target = Path(output) if output else (subject if o.in_place else _signed_name(subject))
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


def _verify(subject: Path, request: VerifyRequest) -> VerificationResult:
    """Check every native signature on ``subject`` against ``trust`` and the package's actual contents.

    The package is hashed only if some signature is by a trusted, usable key, and then only once, with every
    digest algorithm any such signature uses. Its files must be the statement's subjects as a mapping of name to
    digest: the order of a ZIP's entries and how each is compressed are not signed.
    """
    progress = request.progress
    kind, archive = _open_kind(subject)
    try:
        document = _read_document(subject, kind, archive, request.signature)
        candidates = [_Candidate(env, kid, sig) for env in document.envelopes for kid, sig in env.signatures]
        for c in candidates:
            c.check = _check_signature(c, request.trust, request.now)
        _combine_hybrid(candidates, _fail)  # a bundle that needs both halves is judged as one
        algs = {c.statement.digest_algorithm for c in candidates if c.check is None and c.statement}
        actual: dict[str, _Files] = {}
        if len(algs) == 1 and archive is not None:
            (alg,) = algs
            actual = {alg: _Files(archive.hex_digests(alg, exclude=(RESERVED_ENTRY,), progress=progress), alg)}
        elif algs:
            listing = compute_subjects(subject, kind, sorted(algs), archive=archive, progress=progress)
            actual = {a: _Files([(n, d[a].hex()) for n, d in listing], a) for a in algs}
        checks = []
        for c in candidates:
            if c.absorbed:
                continue
            if c.check is None:
                assert c.statement is not None and c.trusted is not None
                c.check = _check_contents(c, actual[c.statement.digest_algorithm], kind)
            checks.append(c.check)
        return request.result(subject, *checks)
    finally:
        if archive is not None:
            archive.close()


def _fail(c: _Candidate, reason: Reason, detail: str, *, subject: str | None = None) -> SignatureCheck:
    st = c.statement
    return SignatureCheck(
        format=NAME,
        key_id=c.report_id,
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
    if c.trusted.kind == "hybrid":
        half = _half_key(c.trusted, c.key_id)
        if half is None:
            return _fail(c, Reason.UNKNOWN_KEY, f"keyid names hybrid key {c.trusted.name}, not one of its halves")
        public, what = half, f"the {algorithm_name(half)} signature of hybrid key {c.trusted.name}"
    elif c.trusted.kind != "pkix":
        return _fail(c, Reason.UNKNOWN_KEY, f"key {c.trusted.name} is not a PKIX key")
    else:
        public = c.trusted.public_key()
        what = f"signature by {c.trusted.name} ({algorithm_name(public)})"
    try:
        verify_signature(public, c.signature, pae(c.envelope.payload_type, c.envelope.payload), rsa_padding="pss")
    except SigneryError:
        return _fail(c, Reason.BAD_SIGNATURE, f"{what} is invalid")
    if not c.statement.names_signer(c.key_id):
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


def _check_contents(c: _Candidate, files: _Files, kind: str) -> SignatureCheck:
    """Compare the signed subjects with ``files``, the package's files and hex digests in the statement's algorithm.

    The subject array is first compared as bytes with the ones the package gives (:class:`_Files`); only when
    neither matches is it parsed, to compare as a mapping (the statement may list the files in any order) and,
    when they differ, to name the file at fault.
    """
    st = c.statement
    assert st is not None and c.trusted is not None
    fast = c.subjects_json is not None and st.package_kind == kind
    if not (fast and c.subjects_json in (files.canonical_array, files.package_array)):
        fault = _contents_fault(c, files, kind, reparse=fast)
        if fault is not None:
            return fault
        st = c.statement
        assert st is not None
    return SignatureCheck(
        format=NAME,
        key_id=c.report_id,
        key_name=c.trusted.name,
        detail=c.note,
        signed_at=st.signed_at,
        claims=dict(st.claims),
    )


def _contents_fault(c: _Candidate, files: _Files, kind: str, *, reparse: bool) -> SignatureCheck | None:
    """Why the package's ``files`` are not what ``c`` signed (``None``: they are); ``reparse`` parses the whole
    statement first (only its subjects' bytes were compared so far)."""
    if reparse:
        try:  # something differs: parse the subjects after all, to compare them as a mapping and say what differs
            c.statement = Statement.from_payload(c.envelope.payload)
        except MalformedError as exc:
            return _fail(c, Reason.MALFORMED, f"signature payload: {exc.message}")
    st = c.statement
    assert st is not None
    if st.package_kind != kind:
        return _fail(c, Reason.TAMPERED, f"signed a {st.package_kind}, found a {kind}", subject=st.package_kind)
    signed = {n: d[st.digest_algorithm] for n, d in st.subjects}  # unique names: from_payload refuses duplicates
    have = dict(files.listing)
    if kind == "file":
        # A lone file is signed for its bytes; renaming the file does not change what was signed.
        ((name, digest),) = have.items()
        if len(signed) != 1 or next(iter(signed.values())) != digest:
            return _fail(c, Reason.TAMPERED, f"{name} differs from what was signed", subject=name)
    elif signed != have:
        name, detail = _first_difference(signed, have)
        return _fail(c, Reason.TAMPERED, detail, subject=name)
    return None


def _first_difference(signed: Mapping[str, str], have: Mapping[str, str]) -> tuple[str, str]:
    """The file to blame, the same whatever the orders: the first signed file (in canonical order) that changed or
    is missing, else the first file that was added."""
    for name in sorted(signed):
        if name not in have:
            return name, f"file {name!r} was signed but is missing"
        if have[name] != signed[name]:
            return name, f"file {name!r} differs from what was signed"
    added = min(have.keys() - signed.keys(), default=None)
    if added is not None:
        return added, f"file {added!r} is not covered by the signature (extra)"
    return "", "contents differ"  # pragma: no cover - the caller found the mappings unequal


# -- detection and inspection -----------------------------------------------------------------------------------


def _detect(subject: Path, signature: Path | None) -> bool:
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


def _inspect(subject: Path, signature: Path | None) -> dict[str, Any]:
    """The envelopes and what each says, without judging trust."""
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


# -- the Format ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NativeOptions(Options):
    """Signing options of the native format.

    Attributes:
        in_place: add the signature to the ZIP itself (a countersignature when it has one already).
        detached: write ``X.signery.json`` beside a ZIP instead of a signed copy.
        digest: the digest of each file (``sha256``, ``sha512``, ``blake3``).
        claims: signed facts about the package (``name``, ``version``...), at most :data:`MAX_CLAIMS`.
    """

    in_place: bool = False
    detached: bool = False
    digest: str = DEFAULT_DIGEST
    claims: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_algorithm(self.digest)
        if self.in_place and self.detached:
            raise UsageError("--in-place and --detached exclude each other", subject="--detached")
        object.__setattr__(self, "claims", _parse_claims(self.claims))


class NativeFormat(FormatBase):
    """signery's DSSE/in-toto format: every file of a package, by content."""

    name = NAME
    summary = "DSSE/in-toto over every file, embedded in a ZIP or detached as X.signery.json"
    embeds = True
    detaches = True
    options_type = NativeOptions
    name_claim = "name"

    def detached_beside(self, subject: Path) -> Path | None:
        path = detached_path(Path(subject))
        return path if path.is_file() else None

    def default_output(self, subject: Path, options: Options) -> Path:
        o: NativeOptions = self._options(options)
        subject = Path(subject)
        if o.detached or package_kind(subject) != "zip" or _carries_another_format(subject):
            return detached_path(subject)
        return subject if o.in_place else _signed_name(subject)

    def merges_into(self, subject: Path, target: Path, options: Options) -> bool:
        # A signature file gains an envelope; a package signed in place keeps its signatures: countersigning.
        o: NativeOptions = self._options(options)
        return Path(target) == detached_path(Path(subject)) or (o.in_place and Path(target) == Path(subject))


FORMAT = NativeFormat(_sign, _verify, _detect, _inspect)
sign, verify, detect, inspect = FORMAT.sign_kw, FORMAT.verify, FORMAT.detect, FORMAT.inspect
