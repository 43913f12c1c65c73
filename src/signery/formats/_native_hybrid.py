"""Hybrid envelopes of the native format: one DSSE envelope signed by both halves of an Ed25519 + ML-DSA-65 bundle.

A :class:`~signery.hybrid.HybridSigner` puts two signatures over the same PAE in one envelope, Ed25519 first, each
``keyid`` its own key's id; the statement's ``keyId`` is the bundle's id and ``keyIds`` lists the halves'. A trust
entry of kind ``hybrid`` (:func:`~signery.trust.trusted_key_from_bundle`) is found by either half's id. When it
``requires_all`` (the default), :func:`combine` makes the envelope's signatures by that bundle one result, valid
only if both halves signed validly; otherwise each signature is judged on its own. Either way a bundle counts as one
key towards a threshold (every result names the bundle's id). ``docs/formats/native.md`` is the specification.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

from ..errors import Reason
from ..hybrid import load_hybrid_public_keys
from ..keys import PublicKey, key_id, short_id
from ..result import SignatureCheck
from ..trust import TrustedKey
from ._native_statement import Envelope, Statement

HALVES = ("Ed25519", "ML-DSA-65")  # the halves of a bundle, in the order its trust entry lists their key ids


@dataclass
class Candidate:
    """One ``(envelope, signature)`` pair being verified, and what is known of it so far."""

    envelope: Envelope
    key_id: str
    signature: bytes
    statement: Statement | None = None
    trusted: TrustedKey | None = None
    check: SignatureCheck | None = None
    subjects_json: bytes | None = None  # the statement's subject array, not yet parsed (see _split_payload)
    note: str | None = None  # the detail of a valid result (which half of a bundle)
    absorbed: bool = False  # reported through another signature of the same envelope (a bundle's other half)

    @property
    def report_id(self) -> str:
        """The key id results name: a bundle's own id for either of its halves (one key towards a threshold)."""
        if self.trusted is not None and self.trusted.kind == "hybrid":
            return self.trusted.key_id
        return self.key_id


def halves_of(trusted: TrustedKey) -> dict[str, PublicKey]:
    """The bundle's two public keys by key id, Ed25519 first, read from its material (not from ``subkey_ids``)."""
    return dict(_halves(trusted.material, trusted.name))


@functools.lru_cache(maxsize=64)
def _halves(material: str, name: str) -> tuple[tuple[str, PublicKey], ...]:
    # Parsed once per bundle, not once per signature: an ML-DSA-65 key is 2 KiB of PEM.
    pair = load_hybrid_public_keys(material.encode(), source=f"trust entry {name}")
    return tuple((key_id(public), public) for public in pair)


def half_key(trusted: TrustedKey, kid: str) -> PublicKey | None:
    """The half of the bundle ``trusted`` whose key id is ``kid`` (``None`` when ``kid`` names neither)."""
    return halves_of(trusted).get(kid)


def half_name(trusted: TrustedKey, kid: str) -> str:
    ids = list(halves_of(trusted))
    return HALVES[ids.index(kid)] if kid in ids else "unknown"


Fail = Callable[..., SignatureCheck]


def combine(candidates: list[Candidate], fail: Fail) -> None:
    """Judge the signatures by hybrid bundles, once each has been checked on its own (before any hashing).

    For a bundle that requires both halves, the envelope's first signature by it carries the verdict and the others
    are ``absorbed``: ``bad-signature`` naming the half that is missing (or the half's own failure), else valid,
    still to be compared with the package. A bundle that does not require both leaves each signature its own.
    """
    groups: dict[tuple[int, str], list[Candidate]] = {}
    for c in candidates:
        t = c.trusted
        if t is None or t.kind != "hybrid":
            continue
        if t.requires_all:
            groups.setdefault((id(c.envelope), t.key_id), []).append(c)
        elif c.check is None:
            c.note = f"the {half_name(t, c.key_id)} signature of hybrid key {t.name} (the other is not required)"
    for members in groups.values():
        lead = members[0]
        trusted = lead.trusted
        assert trusted is not None
        for m in members[1:]:
            m.absorbed = True
        verdict: SignatureCheck | None = None
        for half, kid in zip(HALVES, halves_of(trusted), strict=True):
            mine = [m for m in members if m.key_id == kid]
            if not mine:
                verdict = fail(
                    lead,
                    Reason.BAD_SIGNATURE,
                    f"hybrid key {trusted.name} requires both signatures: the {half} signature (keyid "
                    f"{short_id(kid)}) is missing from the envelope",
                    subject=kid,
                )
                break
            if all(m.check is not None for m in mine):
                verdict = mine[0].check
                break
        if verdict is None:
            lead.note = f"hybrid key {trusted.name}: both the {HALVES[0]} and the {HALVES[1]} signature are valid"
            if lead.check is not None:  # a duplicate of the lead's half is the valid one: the lead stands in for it
                lead.check = None
        else:
            lead.check = verdict


__all__ = ["HALVES", "Candidate", "combine", "half_key", "half_name", "halves_of"]
