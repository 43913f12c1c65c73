"""Verification results: the verdict, its reason when several signatures fail differently, and the messages."""

from __future__ import annotations

import itertools

import pytest

from signery.errors import Reason, VerificationError
from signery.result import SignatureCheck, VerificationResult

PRIORITY = [
    Reason.TAMPERED,
    Reason.UNSAFE_ARCHIVE,
    Reason.BAD_SIGNATURE,
    Reason.REVOKED_KEY,
    Reason.EXPIRED_KEY,
    Reason.POLICY_VIOLATION,
    Reason.MALFORMED,
    Reason.UNKNOWN_KEY,
]


def sig(kid: str, reason: Reason | None = None, **kw: object) -> SignatureCheck:
    return SignatureCheck(format="native", key_id=kid, reason=reason, detail=f"{kid} {reason}", subject=kid, **kw)  # type: ignore[arg-type]


def test_no_signatures_is_unsigned() -> None:
    r = VerificationResult("p.zip", ())
    assert not r.verified and r.reason is Reason.UNSIGNED and "no signature" in r.message
    with pytest.raises(VerificationError) as info:
        r.raise_for_status()
    assert info.value.reason is Reason.UNSIGNED


@pytest.mark.parametrize(("a", "b"), list(itertools.combinations(PRIORITY, 2)))
def test_most_telling_reason_wins_whatever_the_order(a: Reason, b: Reason) -> None:
    for order in ((a, b), (b, a)):
        r = VerificationResult("p", (sig("k1", order[0]), sig("k2", order[1])))
        assert r.reason is a  # a comes first in the priority list
        assert r.fault == ("k1" if order[0] is a else "k2")
        assert r.message == f"{r.fault} {a}"


def test_one_valid_signature_verifies_despite_failing_ones() -> None:
    r = VerificationResult("p", (sig("bad", Reason.TAMPERED), sig("good")))
    assert r.verified and r.reason is None and r.fault is None
    assert r.raise_for_status() is r
    assert r.to_dict()["signatures"][1]["status"] == "valid"


def test_threshold_counts_distinct_keys() -> None:
    same = VerificationResult("p", (sig("k1"), sig("k1")), threshold=2)
    assert not same.verified and same.reason is Reason.POLICY_VIOLATION
    assert same.message == "1 distinct trusted key(s) signed, threshold is 2"
    two = VerificationResult("p", (sig("k1"), sig("k2")), threshold=2)
    assert two.verified and two.message == "verified by 2 trusted key(s)"
    mixed = VerificationResult("p", (sig("k1"), sig("k2", Reason.UNKNOWN_KEY)), threshold=2)
    assert not mixed.verified and mixed.reason is Reason.UNKNOWN_KEY and mixed.fault == "k2"


def test_threshold_below_one_is_refused() -> None:
    with pytest.raises(ValueError):
        VerificationResult("p", (sig("k1"),), threshold=0)


def test_merged_keeps_threshold_and_all_signatures() -> None:
    r = VerificationResult("p", (sig("k1"),), threshold=2).merged(VerificationResult("p", (sig("k2"),)))
    assert r.threshold == 2 and r.verified and len(r.signatures) == 2


def test_to_dict_shape() -> None:
    d = VerificationResult("p", (sig("k1", Reason.EXPIRED_KEY, claims={"name": "x"}),)).to_dict()
    assert d["verified"] is False and d["reason"] == "expired-key"
    (s,) = d["signatures"]
    assert {"key_id", "key_name", "status", "signed_at", "claims"} <= set(s)
    assert s["status"] == "expired-key" and s["claims"] == {"name": "x"}
