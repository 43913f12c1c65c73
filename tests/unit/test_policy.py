"""The install policy: every row of the decision table in docs/policy.md, and how settings are read."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from signery.errors import ConfigError, Reason
from signery.formats import dify
from signery.keys import generate_private_key, key_id
from signery.policy import ALWAYS_REFUSED, Policy, decide, load_policy
from signery.result import SignatureCheck, VerificationResult
from signery.trust import TrustSet


def result(*reasons: Reason | None) -> VerificationResult:
    checks = tuple(
        SignatureCheck("dify", f"{i:064x}", r, key_name=f"key{i}", detail=f"detail {r}", subject=f"/pkg/{i}")
        for i, r in enumerate(reasons)
    )
    return VerificationResult("/pkg/plugin.difypkg", checks)


UNSIGNED = VerificationResult("/pkg/plugin.difypkg", ())
FORCED = Policy()
NOT_FORCED = Policy(force_verifying_signature=False)
NOT_PROVEN = [Reason.UNKNOWN_KEY, Reason.TAMPERED, Reason.BAD_SIGNATURE, Reason.EXPIRED_KEY]


# -- the decision table ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("policy", [FORCED, NOT_FORCED])
def test_verified_installs_as_verified_with_the_signer(policy: Policy) -> None:
    d = decide(result(None), policy)
    assert d.allow and d.status == "verified" and d.reason is None and "key0" in d.message


@pytest.mark.parametrize("res", [UNSIGNED, *(result(r) for r in NOT_PROVEN)])
@pytest.mark.parametrize("allow_unverified", [False, True])
def test_forced_refuses_what_does_not_verify(res: VerificationResult, allow_unverified: bool) -> None:
    d = decide(res, FORCED, allow_unverified=allow_unverified)
    assert not d.allow and d.status is None
    assert d.reason == (res.reason or Reason.UNSIGNED)
    assert "force_verifying_signature" in d.message and d.setting is not None
    assert d.subject  # the file or key at fault, never a blanket message


def test_each_refusal_has_its_own_reason() -> None:
    reasons = {decide(r, FORCED).reason for r in [UNSIGNED, *(result(x) for x in NOT_PROVEN)]}
    assert reasons == {Reason.UNSIGNED, *NOT_PROVEN}


@pytest.mark.parametrize("res", [UNSIGNED, *(result(r) for r in NOT_PROVEN)])
def test_not_forced_installs_unverified_with_the_reason(res: VerificationResult) -> None:
    d = decide(res, NOT_FORCED, allow_unverified=True)
    assert d.allow and d.status == "unverified" and d.reason == (res.reason or Reason.UNSIGNED)
    assert d.reason is not None and d.reason.value in d.message


def test_not_forced_still_needs_the_operator_to_accept_unverified() -> None:
    d = decide(UNSIGNED, NOT_FORCED)
    assert not d.allow and d.reason is Reason.UNSIGNED and "--allow-unverified" in d.message


@pytest.mark.parametrize("reason", sorted(ALWAYS_REFUSED))
def test_explicit_distrust_is_refused_whatever_the_policy(reason: Reason) -> None:
    d = decide(result(reason), NOT_FORCED, allow_unverified=True)
    assert not d.allow and d.reason is reason


def test_one_valid_signature_among_failures_verifies() -> None:
    assert decide(result(Reason.UNKNOWN_KEY, None), FORCED).status == "verified"


def test_mattermost_require_plugin_signature_decides_for_bundles() -> None:
    strict = load_policy(None, env={"REQUIRE_PLUGIN_SIGNATURE": "true", "FORCE_VERIFYING_SIGNATURE": "false"})
    d = decide(UNSIGNED, strict, kind="mattermost", allow_unverified=True)
    assert not d.allow and "REQUIRE_PLUGIN_SIGNATURE" in d.message
    assert decide(UNSIGNED, strict, kind="dify", allow_unverified=True).allow  # Dify follows its own setting
    lax = load_policy(None, env={"REQUIRE_PLUGIN_SIGNATURE": "false"})
    assert decide(UNSIGNED, lax, kind="mattermost", allow_unverified=True).status == "unverified"
    assert not decide(UNSIGNED, lax, kind="dify", allow_unverified=True).allow
    # Unset, Mattermost bundles follow force_verifying_signature (fail closed, unlike Mattermost's default).
    assert not decide(UNSIGNED, Policy(), kind="mattermost", allow_unverified=True).allow


# -- reading settings -----------------------------------------------------------------------------------------------


def test_defaults_are_fail_closed(tmp_path: Path) -> None:
    p = load_policy(tmp_path / "absent.toml", env={})
    assert p.force_verifying_signature and not p.third_party_enabled and p.require_plugin_signature is None
    assert p.trust_dify_marketplace and not p.extra_trust


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    f = tmp_path / "policy.toml"
    f.write_text("force_verifying_signature = false\nrequire_plugin_signature = true\n")
    p = load_policy(f, env={})
    assert not p.force_verifying_signature and p.require_plugin_signature is True
    assert "policy.toml" in p.source_of("force_verifying_signature")
    p = load_policy(f, env={"FORCE_VERIFYING_SIGNATURE": "TRUE", "REQUIRE_PLUGIN_SIGNATURE": ""})
    assert p.force_verifying_signature and p.require_plugin_signature is True  # empty means unset
    assert p.source_of("force_verifying_signature").startswith("FORCE_VERIFYING_SIGNATURE")


@pytest.mark.parametrize(("text", "value"), [("1", True), ("t", True), ("True", True), ("0", False), ("F", False)])
def test_go_booleans(text: str, value: bool) -> None:
    assert load_policy(None, env={"FORCE_VERIFYING_SIGNATURE": text}).force_verifying_signature is value


def test_bad_values_are_config_errors_naming_the_setting(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as e:
        load_policy(None, env={"THIRD_PARTY_SIGNATURE_VERIFICATION_ENABLED": "maybe"})
    assert e.value.subject == "THIRD_PARTY_SIGNATURE_VERIFICATION_ENABLED" and e.value.exit_code == 3
    bad = tmp_path / "p.toml"
    bad.write_text("force_verifying_signatures = false\n")
    with pytest.raises(ConfigError, match="unknown setting"):
        load_policy(bad, env={})
    bad.write_text("force_verifying_signature = [\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_policy(bad, env={})
    with pytest.raises(ConfigError, match="cannot be read"):
        load_policy(tmp_path / "missing.toml", env={}, required=True)


@pytest.fixture(scope="module")
def third_party_pem() -> bytes:
    key = generate_private_key("rsa-2048")
    return key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.PKCS1)


def test_third_party_keys_load_trimmed_with_trailing_whitespace(tmp_path: Path, third_party_pem: bytes) -> None:
    (tmp_path / "a.pem").write_bytes(third_party_pem + b"\n\n")
    (tmp_path / "b.pem").write_bytes(dify.official_key_pem() + b" \n")
    env = {
        "THIRD_PARTY_SIGNATURE_VERIFICATION_ENABLED": "true",
        "THIRD_PARTY_SIGNATURE_VERIFICATION_PUBLIC_KEYS": f" {tmp_path / 'a.pem'} ,{tmp_path / 'b.pem'},",
    }
    p = load_policy(None, env=env)
    assert len(p.extra_trust) == 2 and all(k.constraints.formats == ("dify",) for k in p.extra_trust)
    ids = [k.key_id for k in p.trust_for("dify", TrustSet())]
    assert len(ids) == len(set(ids)) == 2  # the official key is not added twice
    assert list(p.trust_for("mattermost", TrustSet())) == []


def test_toml_key_paths_are_relative_to_the_file(tmp_path: Path, third_party_pem: bytes) -> None:
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "partner.pem").write_bytes(third_party_pem)
    f = tmp_path / "policy.toml"
    f.write_text(
        "third_party_signature_verification_enabled = true\n"
        'third_party_signature_verification_public_keys = ["keys/partner.pem"]\n'
    )
    assert len(load_policy(f, env={}).extra_trust) == 1


@pytest.mark.parametrize("problem", ["missing", "not-a-key", "directory"])
def test_unusable_key_file_is_a_config_error_before_anything_is_judged(tmp_path: Path, problem: str) -> None:
    path = tmp_path / "partner.pem"
    if problem == "not-a-key":
        path.write_text("hello\n")
    elif problem == "directory":
        path.mkdir()
    env = {
        "THIRD_PARTY_SIGNATURE_VERIFICATION_ENABLED": "1",
        "THIRD_PARTY_SIGNATURE_VERIFICATION_PUBLIC_KEYS": str(path),
    }
    with pytest.raises(ConfigError) as e:
        load_policy(None, env=env)
    assert e.value.reason is Reason.CONFIG_ERROR and e.value.subject == str(path)
    assert "THIRD_PARTY_SIGNATURE_VERIFICATION_PUBLIC_KEYS" in e.value.message and str(path) in e.value.message
    # Disabled, the daemon never reads the list; neither do we.
    assert not load_policy(None, env={**env, "THIRD_PARTY_SIGNATURE_VERIFICATION_ENABLED": "false"}).extra_trust


def test_third_party_keys_never_hide_the_official_signature(
    tmp_path: Path, third_party_pem: bytes, vectors: Path
) -> None:
    (tmp_path / "a.pem").write_bytes(third_party_pem)
    env = {
        "THIRD_PARTY_SIGNATURE_VERIFICATION_ENABLED": "true",
        "THIRD_PARTY_SIGNATURE_VERIFICATION_PUBLIC_KEYS": str(tmp_path / "a.pem"),
    }
    trust = load_policy(None, env=env).trust_for("dify", TrustSet())
    res = dify.verify(vectors / "dify" / "langgenius-agent_0.0.14.difypkg", trust=trust)
    assert res.verified and res.signatures[0].key_id == key_id(dify.official_trust().__iter__().__next__().public_key())
    off = load_policy(None, env={}).trust_for("dify", TrustSet())
    no_marketplace = Policy(trust_dify_marketplace=False).trust_for("dify", TrustSet())
    assert len(off) == 1 and len(no_marketplace) == 0
