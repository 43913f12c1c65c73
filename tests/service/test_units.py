"""Unit tests of the service's pieces: envelope encryption, names, the rate limiter, settings, the audit hash."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from signery._internal.names import check_name, is_name
from signery.errors import ConfigError, EnvironmentFailure, MalformedError, UsageError
from signery.keys import generate_private_key, key_id
from signery.registry.naming import check_name as registry_check_name
from signery.service.apikeys import parse_expiry
from signery.service.audit import GENESIS, AuditEvent, row_hash
from signery.service.envelope import SealedKey, open_private_key, seal_private_key
from signery.service.fastpath import _SIGN_PATH as SIGN_PATH
from signery.service.ratelimit import RateLimiter
from signery.service.runner import Listen
from signery.service.settings import MasterKey, Settings


def test_envelope_round_trip_and_associated_data() -> None:
    master = MasterKey(os.urandom(32))
    key = generate_private_key("ecdsa-p256")
    kid = key_id(key.public_key())
    sealed = seal_private_key(key, master=master, name="a", version=1, key_id=kid)
    assert "PRIVATE" not in repr(sealed) and master.to_text() not in repr(master)
    opened = open_private_key(sealed, master=master, name="a", version=1, key_id=kid)
    assert key_id(opened.public_key()) == kid
    for name, version, k in (("b", 1, kid), ("a", 2, kid), ("a", 1, "0" * 64)):
        with pytest.raises(EnvironmentFailure, match="altered"):
            open_private_key(sealed, master=master, name=name, version=version, key_id=k)
    flipped = SealedKey(
        sealed.wrapped_data_key, sealed.ciphertext[:-1] + bytes([sealed.ciphertext[-1] ^ 1]), sealed.master_key_id
    )
    with pytest.raises(EnvironmentFailure):
        open_private_key(flipped, master=master, name="a", version=1, key_id=kid)
    with pytest.raises(ConfigError, match="master key"):
        open_private_key(sealed, master=MasterKey(os.urandom(32)), name="a", version=1, key_id=kid)


def test_every_seal_uses_a_fresh_data_key() -> None:
    master = MasterKey(os.urandom(32))
    key = generate_private_key("ed25519")
    a = seal_private_key(key, master=master, name="a", version=1, key_id="x")
    b = seal_private_key(key, master=master, name="a", version=1, key_id="x")
    assert a.wrapped_data_key != b.wrapped_data_key and a.ciphertext != b.ciphertext


@given(st.text(max_size=80))
def test_names_never_paths(name: str) -> None:
    try:
        check_name(name)
    except UsageError:
        return
    assert "/" not in name and "\\" not in name and name not in (".", "..") and "\0" not in name
    assert 1 <= len(name) <= 64 and name.isascii()


@pytest.mark.parametrize("name", ["release", "release-1.2_x", "a", "A9", "x" * 64])
def test_the_one_name_rule_accepts(name: str) -> None:
    assert check_name(name) == name and registry_check_name(name) == name and is_name(name)
    assert SIGN_PATH.fullmatch(f"/v1/keys/{name}/sign") is not None


@pytest.mark.parametrize("name", ["", ".", "..", ".x", "x.", "-x", "x-", "_x", "a..b", "a/b", "a b", "x" * 65, "é"])
def test_the_one_name_rule_refuses(name: str) -> None:
    with pytest.raises(UsageError):
        check_name(name)
    assert not is_name(name)
    if len(name) <= 64:
        with pytest.raises(MalformedError):
            registry_check_name(name)
    assert SIGN_PATH.fullmatch(f"/v1/keys/{name}/sign") is None or ".." in name  # ".." is the front's second check


@given(st.text(alphabet="aZ09._-/ \\", max_size=70))
def test_service_registry_and_the_lean_front_agree_on_names(name: str) -> None:
    """One rule: the service (key and API key names), the registry (package names, up to 128 characters) and the
    sign route's lean front accept exactly the same names of up to 64 characters."""
    service_ok = is_name(name)
    try:
        registry_check_name(name)
        registry_ok = True
    except MalformedError:
        registry_ok = False
    front_ok = SIGN_PATH.fullmatch(f"/v1/keys/{name}/sign") is not None and is_name(name)
    assert service_ok == front_ok
    assert service_ok == registry_ok or (len(name) > 64 and registry_ok)


def test_settings_travel_to_worker_processes_whole() -> None:
    """The supervisor hands each spawned worker its settings over multiprocessing's pipe, pickled."""
    settings = Settings(database_url="sqlite:///x.db", master_key=MasterKey(os.urandom(32)), burst=7)
    back = pickle.loads(pickle.dumps(settings))  # noqa: S301 - our own bytes
    assert back.master_key.secret == settings.master_key.secret and back.burst == 7
    assert settings.master_key.to_text() not in repr(back)
    listen = Listen(host="::1", port=9443)
    assert pickle.loads(pickle.dumps(listen)) == listen  # noqa: S301 and listen.url == "http://[::1]:9443"
    with pytest.raises(ConfigError):
        Listen(port=0)


def test_rate_limiter_refills_and_says_when() -> None:
    limiter = RateLimiter(rate=2.0, burst=2)
    assert limiter.take("k") == 0 and limiter.take("k") == 0
    assert limiter.take("k") >= 1
    assert limiter.take("other") == 0  # per caller
    time.sleep(0.6)
    assert limiter.take("k") == 0


def test_master_key_and_settings_validation(tmp_path: object) -> None:
    with pytest.raises(ConfigError):
        MasterKey(b"short")
    with pytest.raises(ConfigError, match="base64"):
        MasterKey.from_text("!!!", source="env")
    with pytest.raises(ConfigError, match="32 bytes"):
        MasterKey.from_text("AAAA", source="env")
    key = MasterKey(os.urandom(32))
    assert MasterKey.from_text(key.to_text(), source="env").key_id == key.key_id
    with pytest.raises(ConfigError, match="database URL"):
        Settings(database_url="mysql://x", master_key=key)
    assert Settings(database_url="postgresql://u@h/d", master_key=key).database_url.startswith("postgresql+psycopg")
    with pytest.raises(ConfigError):
        Settings(database_url="sqlite:///x.db", master_key=key, burst=0)


def test_expiry_parsing() -> None:
    assert parse_expiry(None) is None
    assert parse_expiry("30d") is not None and parse_expiry("2030-01-01T00:00:00Z") is not None
    with pytest.raises(MalformedError):
        parse_expiry("tomorrow")


def test_audit_hash_covers_every_field() -> None:
    base = AuditEvent(caller="ci", action="sign", result="ok", key_name="k", key_version=1, digest="sha256:00")
    h = row_hash(seq=1, time="t", event=base, prev_hash=GENESIS)
    variants = [
        AuditEvent(caller="cj", action="sign", result="ok", key_name="k", key_version=1, digest="sha256:00"),
        AuditEvent(caller="ci", action="sign", result="ok", key_name="k", key_version=2, digest="sha256:00"),
        AuditEvent(caller="ci", action="sign", result="ok", key_name="k", key_version=1, digest="sha256:01"),
        AuditEvent(caller="ci", action="sign", result="no", key_name="k", key_version=1, digest="sha256:00"),
    ]
    assert all(row_hash(seq=1, time="t", event=v, prev_hash=GENESIS) != h for v in variants)
    assert row_hash(seq=2, time="t", event=base, prev_hash=GENESIS) != h
    assert row_hash(seq=1, time="t", event=base, prev_hash="1" * 64) != h


_text = st.text(max_size=40)  # any code point: quotes, backslashes, controls, non-ASCII, lone surrogates


@given(
    seq=st.integers(min_value=1, max_value=2**31),
    time_=_text,
    caller=_text,
    action=_text,
    result=_text,
    key_name=st.none() | _text,
    key_version=st.none() | st.integers(min_value=1, max_value=10**6),
    digest=st.none() | _text,
    detail=st.none() | _text,
    prev=_text,
)
def test_audit_hash_is_the_json_dumps_canonical_form(
    seq: int,
    time_: str,
    caller: str,
    action: str,
    result: str,
    key_name: str | None,
    key_version: int | None,
    digest: str | None,
    detail: str | None,
    prev: str,
) -> None:
    """Chains written before row_hash was spelled out must still verify: the bytes hashed are json.dumps's."""
    event = AuditEvent(caller, action, result, key_name, key_version, digest, detail)
    doc = {
        "seq": seq,
        "time": time_,
        "caller": caller,
        "action": action,
        "key": key_name,
        "version": key_version,
        "digest": digest,
        "result": result,
        "detail": detail,
        "prev": prev,
    }
    canonical = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()
    assert row_hash(seq=seq, time=time_, event=event, prev_hash=prev) == hashlib.sha256(canonical).hexdigest()
