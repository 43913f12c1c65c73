"""Fuzz the OCM component descriptor loader and everything verification does with a descriptor.

For every input (YAML or JSON), ``parse_descriptor`` either returns a :class:`Descriptor` or refuses. On a
descriptor:

- every accessor, ``to_v2``, ``copy``, every normalisation (v1, v2, v3, v4alpha1) and its digest succeed or refuse;
- ``dump`` must write YAML that reads back to the same document (signing writes descriptors back this way);
- every named signature (at most 4) is verified as ``signery verify --format ocm`` does, in memory: the
  descriptor's local blob and the one referenced component version (``acme.org/child:1.0.0``) exist, and the keys
  are the fixed Ed25519 and RSA keys and the X.509 root that signed the seeds. So mutations that keep signatures
  valid reach the digest checks, and the rest reach every refusal.

    .venv/bin/python fuzz/fuzz_ocm_descriptor.py -max_total_time=60 CORPUS_DIR
    .venv/bin/python fuzz/fuzz_ocm_descriptor.py crash-file
"""

from __future__ import annotations

import math
from typing import Any

import _harness
import atheris

with atheris.instrument_imports(include=["signery"]):
    from signery.ocm import signing
    from signery.ocm.archive import Repositories
    from signery.ocm.descriptor import Descriptor, element_label, parse_descriptor
    from signery.ocm.digests import descriptor_digest
    from signery.ocm.normalise import ALGORITHMS, DEFAULT, normalise

MAX_SIGNATURES = 4  # verified per input; each costs a normalisation and a public-key operation
LEAF, ROOT = _harness.x509_chain()
REPOSITORY = Repositories(_harness.MemoryRepository())
KEYS = {"ed25519": _harness.ed25519_key().public_key(), "rsa": _harness.rsa_key().public_key()}


def same(a: Any, b: Any) -> bool:
    """Equality of parsed documents, with NaN equal to itself (``.nan`` is a YAML float like any other)."""
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def check_descriptor(d: Descriptor) -> None:
    _ = (d.name, d.version, d.identity, d.resources, d.references, d.signatures, d.schema)
    for kind, _i, item in d.iter_elements():
        element_label(kind, item)
    _harness.refused(d.to_v2)
    dumped, err = _harness.refused(d.dump)
    if dumped is None:
        raise _harness.Disagreement(f"dump() refused a descriptor parse_descriptor accepted: {err!r}")
    again, err = _harness.refused(parse_descriptor, dumped, source="dumped")
    if again is None:
        raise _harness.Disagreement(f"dump() wrote a descriptor that does not read back: {err!r}")
    if not same(again.raw, d.raw):
        raise _harness.Disagreement("dump() wrote a descriptor that reads back differently")
    for algorithm in ALGORITHMS:
        _harness.refused(normalise, d, algorithm)
    _harness.refused(descriptor_digest, d, normalisation=DEFAULT, hash_alg="sha256")


def check_signatures(data: bytes) -> None:
    names = [s.get("name") for s in parse_descriptor(data, source="input").signatures]
    for name in names[:MAX_SIGNATURES]:
        if not isinstance(name, str):
            continue
        for key in ("ed25519", "rsa", "x509"):
            cv = _harness.MemoryComponentVersion(parse_descriptor(data, source="input"))  # a fresh copy each time
            if key == "x509":
                kwargs: dict[str, Any] = {"roots": [ROOT]}
            else:
                kwargs = {"public_key": KEYS[key]}
            _harness.refused(
                signing.verify_component_version, cv, signature=name, repository=REPOSITORY, now=_harness.NOW, **kwargs
            )
    cv = _harness.MemoryComponentVersion(parse_descriptor(data, source="input"))
    _harness.refused(signing.digest_component_version, cv, repository=REPOSITORY)


def test_one_input(data: bytes) -> None:
    d, _ = _harness.refused(parse_descriptor, data, source="input")
    if d is None:
        return
    check_descriptor(d)
    check_signatures(data)


if __name__ == "__main__":
    _harness.fuzz(test_one_input)
