"""Fuzz the native signature document (``.signery/signatures.json`` and ``*.signery.json``) and its statements.

Every input is read two ways:

- as a signature document: ``SignatureDocument.from_bytes``; an accepted document must write (``to_bytes``) and read
  back to the same envelopes; every envelope's payload is then read as a statement (below); and the document is
  verified as the detached signature of a fixed file against the fixed Ed25519 keys that signed the seeds
  (``native.verify`` and ``native.inspect``);
- as a DSSE payload: ``Statement.from_payload``, plus the shortcut verification takes for canonical statements.
  ``_split_payload`` cuts off the subject array's contents, ``from_payload`` parses the rest, and the contents are
  compared as bytes with what ``_subjects_json`` writes for a package's files. Whenever those bytes match for some
  files (unique names, as any package's), the whole payload must parse too, to exactly those subjects and the same
  other fields: otherwise the shortcut would accept a statement that does not say what it seems to. The
  accelerator's ``subjects_json`` must write the pure-Python writer's bytes (or decline).

``$SIGNERY_FUZZ_FASTZIP`` selects the accelerator build, as for fuzz_zip.py.

    .venv/bin/python fuzz/fuzz_native_document.py -max_total_time=60 CORPUS_DIR
    .venv/bin/python fuzz/fuzz_native_document.py crash-file
"""

from __future__ import annotations

import json

import _harness
import atheris

_harness.use_accelerator_from_env()

with atheris.instrument_imports(include=["signery"]):
    from signery import archive
    from signery.formats import native
    from signery.formats.native import SignatureDocument, Statement
    from signery.trust import TrustSet, trusted_key_from_public

FAST = archive._fastzip
TRUST = TrustSet(
    [
        trusted_key_from_public(_harness.ed25519_key().public_key(), name="fuzz-ed25519"),
        trusted_key_from_public(_harness.ed25519_subkey().public_key(), name="fuzz-ed25519-2"),
    ]
)
SCRATCH = _harness.scratch()
SUBJECT = SCRATCH / "subject.txt"
SUBJECT.write_bytes(_harness.MESSAGE)
DOCUMENT = SCRATCH / "subject.txt.signery.json"
MAX_ENVELOPES = 8  # statements parsed per document (each is bounded; this bounds the time per input)


def _fields(st: Statement) -> tuple[object, ...]:
    return (st.signed_at, st.key_id, st.digest_algorithm, st.package_kind, dict(st.claims))


def _pairs_from_contents(contents: bytes, alg: str) -> list[tuple[str, str]] | None:
    """The (name, digest) pairs the subject array's contents spell, when they are JSON subjects at all."""
    try:
        subjects = json.loads(b"[" + contents + b"]")
    except (ValueError, RecursionError):
        return None
    pairs = []
    for s in subjects:
        if not isinstance(s, dict) or not isinstance(s.get("name"), str) or not isinstance(s.get("digest"), dict):
            return None
        digest = s["digest"].get(alg)
        if not isinstance(digest, str):
            return None
        pairs.append((s["name"], digest))
    return pairs


def check_subjects_writers(pairs: list[tuple[str, str]], alg: str) -> bytes | None:
    slow = native._subjects_json_py(pairs, alg)
    if FAST is not None:
        fast = FAST.subjects_json(pairs, alg)
        if fast is not None and fast != slow:
            raise _harness.Disagreement(f"_fastzip.subjects_json wrote {fast!r}; the Python writer {slow!r}")
    return native._subjects_json(pairs, alg)


def check_payload(payload: bytes) -> None:
    whole, whole_err = _harness.refused(Statement.from_payload, payload)
    if whole is not None:
        pairs = [(s.name, s.digest[whole.digest_algorithm]) for s in whole.subjects]
        check_subjects_writers(pairs, whole.digest_algorithm)
    split = native._split_payload(payload)
    if split is None:
        return
    head_bytes, contents = split
    head, _ = _harness.refused(Statement.from_payload, head_bytes + b"]}")
    if head is None:
        return
    pairs = _pairs_from_contents(contents, head.digest_algorithm)
    if pairs is None or len({n for n, _ in pairs}) != len(pairs):
        return  # no package lists these files (a package's names are unique): the shortcut can never match them
    if check_subjects_writers(pairs, head.digest_algorithm) != contents:
        return  # verification would not take the shortcut for these contents: it parses the whole payload
    # The shortcut accepts `pairs` as the signed files: the whole statement must say exactly that.
    if whole is None:
        raise _harness.Disagreement(f"the subject shortcut accepts a payload that does not parse: {whole_err!r}")
    signed = [(s.name, s.digest[whole.digest_algorithm]) for s in whole.subjects]
    if signed != pairs or whole.digest_algorithm != head.digest_algorithm:
        raise _harness.Disagreement(f"the subject shortcut sees files {pairs!r}; the statement signs {signed!r}")
    if _fields(whole) != _fields(head):
        raise _harness.Disagreement(f"the statement head reads {_fields(head)}; the whole payload {_fields(whole)}")


def check_document(data: bytes) -> None:
    doc, _ = _harness.refused(SignatureDocument.from_bytes, data, source="input")
    if doc is None:
        return
    again, err = _harness.refused(SignatureDocument.from_bytes, doc.to_bytes(), source="rewritten")
    if again != doc:
        raise _harness.Disagreement(f"a document does not read back as written: {err!r}")
    for env in doc.envelopes[:MAX_ENVELOPES]:
        check_payload(env.payload)
        native.pae(env.payload_type, env.payload)


def test_one_input(data: bytes) -> None:
    check_document(data)
    check_payload(data)
    DOCUMENT.write_bytes(data)
    _harness.refused(native.verify, SUBJECT, trust=TRUST, signature=DOCUMENT, now=_harness.NOW)
    _harness.refused(native.inspect, SUBJECT, signature=DOCUMENT)
    _harness.refused(native.detect, SUBJECT, signature=DOCUMENT)


if __name__ == "__main__":
    _harness.fuzz(test_one_input)
