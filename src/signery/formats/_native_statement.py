"""The native format's model: the in-toto Statement, its DSSE envelope and the signature document holding them.

Parsing here is bounded and strict (unknown members, bad base64 and duplicate subjects are ``malformed``); what the
statement must say about a particular package is :mod:`signery.formats.native`'s business. Every public name is
re-exported there, which is where callers import it from.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from operator import itemgetter
from typing import Any, NamedTuple, TypeVar

from .._internal.parse import load_json, refuse_lone_surrogates
from ..digests import DIGEST_ALGORITHMS
from ..errors import MalformedError, UsageError

PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://signery.dev/package-signature/v1"
DOCUMENT_MEDIA_TYPE = "application/vnd.signery.signatures.v1+json"

MAX_ENVELOPES = 16  # more independent signatures than any real release process makes
MAX_SIGS_PER_ENVELOPE = 16
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
    listed = list(names)  # UTF-8 is concatenative: one encode of the joined names counts every name's bytes
    subjects = len("".join(listed).encode()) + _SUBJECT_OVERHEAD * len(listed)
    return min(MAX_DOCUMENT_BYTES, MAX_ENVELOPES * (_ENVELOPE_OVERHEAD + (subjects + 1024) * 4 // 3))


_Named = TypeVar("_Named", bound=tuple[str, Any])


def canonical_order(subjects: Iterable[_Named]) -> list[_Named]:
    """``(name, ...)`` pairs sorted by the UTF-8 bytes of the name: the order signing writes subjects in.

    Lexicographic order of UTF-8 bytes is the order of code points, so comparing the ``str`` names gives it without
    encoding them (a name holds only Unicode scalar values: surrogates are refused as unsafe). It is *not* the
    UTF-16 order RFC 8785 sorts object keys by: ``"\\uff61"`` comes before ``"\\U0001f600"`` here.
    """
    return sorted(subjects, key=itemgetter(0))


# -- the statement -------------------------------------------------------------------------------------------------


class Subject(NamedTuple):
    """One file of a package: its normalised relative path and digests (hex, by algorithm)."""

    name: str
    digest: Mapping[str, str]


@dataclass(frozen=True)
class Statement:
    """A parsed, validated in-toto Statement as signery writes it.

    ``subjects`` are written in the order given (signing gives :func:`canonical_order`) and parsed in the order
    written; a subject name listed twice is ``malformed``. ``key_ids`` is empty but for a hybrid envelope: then
    ``key_id`` is the bundle's and ``key_ids`` its halves' (``keyIds``, each a signature's ``keyid``).
    """

    subjects: tuple[Subject, ...]
    signed_at: datetime
    key_id: str
    digest_algorithm: str
    package_kind: str
    claims: Mapping[str, str] = field(default_factory=dict)
    key_ids: tuple[str, ...] = ()

    def names_signer(self, kid: str) -> bool:
        """Whether the statement names ``kid`` as (one of) its signing keys: ``keyId``, or one of ``keyIds``."""
        return kid == self.key_id or kid in self.key_ids

    def to_payload(self) -> bytes:
        doc: dict[str, Any] = {
            "_type": STATEMENT_TYPE,
            "subject": [{"name": s.name, "digest": dict(s.digest)} for s in self.subjects],
            "predicateType": PREDICATE_TYPE,
            "predicate": {
                "signedAt": iso(self.signed_at),
                "keyId": self.key_id,
                "digestAlgorithm": self.digest_algorithm,
                "packageKind": self.package_kind,
                "claims": dict(self.claims),
                **({"keyIds": list(self.key_ids)} if self.key_ids else {}),
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
        refuse_lone_surrogates(doc, payload, source="statement")
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
        if len({n for n, _ in pairs}) != len(pairs):
            _explain_duplicates(pairs)
        new = tuple.__new__
        parsed = [new(Subject, (n, {alg: v})) for n, v in pairs]
        claims = pred.get("claims", {})
        if not isinstance(claims, dict) or not all(isinstance(v, str) for v in claims.values()):
            raise MalformedError("claims must be an object of strings")
        key_ids = pred.get("keyIds", [])
        if (
            not isinstance(key_ids, list)
            or len(key_ids) > MAX_SIGS_PER_ENVELOPE
            or not all(isinstance(k, str) for k in key_ids)
        ):
            raise MalformedError(f"keyIds must be a list of at most {MAX_SIGS_PER_ENVELOPE} key ids")
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
            key_ids=tuple(key_ids),
        )


def _explain_subjects(subjects: list[Any], alg: str) -> None:
    """Raise ``malformed`` naming the first subject that is not ``{"name": str, "digest": {alg: str}}``."""
    for s in subjects:
        if not isinstance(s, dict) or not isinstance(s.get("name"), str) or not isinstance(s.get("digest"), dict):
            raise MalformedError("malformed subject in statement")
        if not isinstance(s["digest"].get(alg), str):
            raise MalformedError(f"subject {s['name']!r} lacks a {alg} digest")
    raise MalformedError("malformed subject in statement")  # pragma: no cover - the fast path found a problem


def _explain_duplicates(pairs: list[tuple[str, str]]) -> None:
    """Raise ``malformed`` naming the first subject listed twice: a file has one digest, and a mapping one value."""
    seen: set[str] = set()
    for name, _ in pairs:
        if name in seen:
            raise MalformedError(f"subject {name!r} is listed twice in the statement")
        seen.add(name)
    raise MalformedError("duplicate subject in statement")  # pragma: no cover - the caller counted one


def iso(t: datetime) -> str:
    return t.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


# -- the envelope and the document ---------------------------------------------------------------------------------


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
