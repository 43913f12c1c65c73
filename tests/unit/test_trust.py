"""The trust store: entries, clashes, expiry, revocation, constraints, corruption and atomic concurrent writes."""

from __future__ import annotations

import json
import multiprocessing
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import NameOID

from signery.errors import ConfigError, MalformedError, Reason, UsageError
from signery.keys import PrivateKey, generate_private_key, key_id, private_key_pem, public_key_pem
from signery.trust import (
    Constraints,
    TrustedKey,
    TrustSet,
    TrustStore,
    load_trusted_key_file,
    parse_expiry,
    trusted_key_from_public,
)

NOW = datetime(2026, 6, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def privs() -> list[PrivateKey]:
    return [generate_private_key("ed25519") for _ in range(3)] + [generate_private_key("ecdsa-p256")]


def pub_file(tmp_path: Path, key: PrivateKey, name: str) -> Path:
    p = tmp_path / f"{name}.public.pem"
    p.write_bytes(public_key_pem(key.public_key()))
    return p


def test_add_list_remove_round_trip(tmp_path: Path, privs: list[PrivateKey]) -> None:
    store = TrustStore(tmp_path / "store")
    assert len(store.load()) == 0 and not store.load()  # a missing store trusts nothing
    alice = load_trusted_key_file(pub_file(tmp_path, privs[0], "alice")).key
    assert alice.name == "alice" and alice.kind == "pkix" and alice.key_id == key_id(privs[0].public_key())
    bob = load_trusted_key_file(pub_file(tmp_path, privs[1], "x"), name="bob").key
    store.add(alice, bob)
    loaded = store.load()
    assert [k.name for k in loaded] == ["alice", "bob"]
    assert loaded.get(alice.key_id.upper()) == alice  # ids are case-insensitive
    assert loaded.get(alice.key_id).public_key().public_bytes_raw() == privs[0].public_key().public_bytes_raw()  # type: ignore[union-attr]
    assert store.remove("alice") == [alice]
    assert [k.name for k in store.load()] == ["bob"]
    with pytest.raises(UsageError) as short:
        store.remove(bob.key_id[:12])  # a prefix shorter than 16 hex digits names nothing
    assert "at least 16 hex digits" in str(short.value.hint)
    assert store.remove(bob.key_id[:16].upper()) == [bob]  # a unique 16+ hex prefix, in any case
    assert len(store.load()) == 0


def test_summary_hides_material_and_round_trips(privs: list[PrivateKey]) -> None:
    k = trusted_key_from_public(privs[0].public_key(), name="a", expires=NOW, constraints=Constraints(names=("x*",)))
    assert "material" not in k.summary()
    assert TrustedKey.from_dict(json.loads(json.dumps(k.to_dict()))) == k.__class__(**{**k.__dict__})


def test_name_and_key_clashes_are_refused_unless_replacing(tmp_path: Path, privs: list[PrivateKey]) -> None:
    store = TrustStore(tmp_path)
    store.add(trusted_key_from_public(privs[0].public_key(), name="alice"))
    with pytest.raises(UsageError, match="name 'alice'"):
        store.add(trusted_key_from_public(privs[1].public_key(), name="alice"))
    with pytest.raises(UsageError, match="already trusted as 'alice'"):
        store.add(trusted_key_from_public(privs[0].public_key(), name="alice2"))
    assert [k.name for k in store.load()] == ["alice"]  # nothing changed
    store.add(trusted_key_from_public(privs[1].public_key(), name="alice"), replace_existing=True)
    assert [k.key_id for k in store.load()] == [key_id(privs[1].public_key())]


def test_remove_unknown_or_ambiguous_changes_nothing(tmp_path: Path, privs: list[PrivateKey]) -> None:
    store = TrustStore(tmp_path)
    store.add(*(trusted_key_from_public(p.public_key(), name=f"k{i}") for i, p in enumerate(privs[:2])))
    with pytest.raises(UsageError):
        store.remove("k0", "nobody")
    assert len(store.load()) == 2
    with pytest.raises(UsageError):
        store.remove("abc")  # too short to be a key-id prefix, and no such name
    with pytest.raises(UsageError):
        store.revoke("nobody")


def test_revoke_marks_the_key_and_keeps_it(tmp_path: Path, privs: list[PrivateKey]) -> None:
    store = TrustStore(tmp_path)
    store.add(trusted_key_from_public(privs[0].public_key(), name="alice"))
    assert store.revoke("alice").revoked
    (k,) = store.load()
    assert k.revoked and k.status_at(NOW) is Reason.REVOKED_KEY


def test_expiry_gives_expired_key(privs: list[PrivateKey]) -> None:
    k = trusted_key_from_public(privs[0].public_key(), name="a", expires=NOW)
    assert k.status_at(NOW - timedelta(seconds=1)) is None
    assert k.status_at(NOW) is Reason.EXPIRED_KEY
    assert k.status_at(NOW + timedelta(days=1)) is Reason.EXPIRED_KEY
    revoked_and_expired = TrustedKey(**{**k.__dict__, "revoked": True})
    assert revoked_and_expired.status_at(NOW + timedelta(days=1)) is Reason.REVOKED_KEY


def test_parse_expiry() -> None:
    assert parse_expiry("2027-01-31") == datetime(2027, 1, 31, tzinfo=UTC)
    assert parse_expiry("2027-01-31T12:00:00Z") == datetime(2027, 1, 31, 12, tzinfo=UTC)
    assert parse_expiry("2027-01-31T12:00:00+02:00") == datetime(2027, 1, 31, 10, tzinfo=UTC)
    for bad in ("tomorrow", "2027-13-01", "31/01/2027", ""):
        with pytest.raises(UsageError):
            parse_expiry(bad)


def test_expires_option_is_stored(tmp_path: Path, privs: list[PrivateKey]) -> None:
    store = TrustStore(tmp_path / "s")
    store.add(load_trusted_key_file(pub_file(tmp_path, privs[0], "a"), expires=NOW).key)
    (k,) = store.load()
    assert k.expires == NOW and k.status_at(NOW) is Reason.EXPIRED_KEY


@pytest.mark.parametrize(
    ("constraints", "fmt", "claims", "fragment"),
    [
        (Constraints(formats=("dify",)), "native", {}, "formats dify"),
        (Constraints(categories=("partner",)), "native", {}, "claims none"),
        (Constraints(categories=("partner",)), "native", {"category": "langgenius"}, "category 'langgenius'"),
        (Constraints(names=("acme-*",)), "native", {}, "names no package"),
        (Constraints(names=("acme-*",)), "native", {"name": "evil-acme"}, "package 'evil-acme'"),
        (Constraints(names=("acme-*",)), "native", {"name": "ACME-x"}, "package 'ACME-x'"),  # case-sensitive
    ],
)
def test_constraint_violations_are_explained(
    constraints: Constraints, fmt: str, claims: dict[str, str], fragment: str
) -> None:
    v = constraints.violation(fmt=fmt, claims=claims)
    assert v is not None and fragment in v


def test_constraints_allow_what_they_name() -> None:
    c = Constraints(categories=("partner", "community"), names=("acme-*", "tools/*"), formats=("native",))
    assert c.violation(fmt="native", claims={"category": "partner", "name": "acme-search"}) is None
    assert c.violation(fmt="native", claims={"category": "community", "name": "tools/x"}) is None
    assert Constraints().violation(fmt="anything", claims={}) is None


@pytest.mark.parametrize(
    "content",
    [
        b"{not json",
        b"[]",
        b'{"schema": 2, "keys": []}',
        b'{"schema": 1, "keys": {}}',
        b'{"schema": 1, "keys": [{"name": "x"}]}',
        b'{"schema": 1, "keys": [{"name": "x", "key_id": "zz", "kind": "pkix", "material": "", "added_at": "now"}]}',
        b'{"schema": 1, "keys": [1]}',
        b"\xff\xfe",
    ],
)
def test_corrupt_store_is_a_config_error(tmp_path: Path, content: bytes) -> None:
    (tmp_path / "trust.json").write_bytes(content)
    with pytest.raises(ConfigError) as info:
        TrustStore(tmp_path).load()
    assert info.value.reason is Reason.CONFIG_ERROR and info.value.exit_code == 3
    assert info.value.subject == str(tmp_path / "trust.json")


def test_a_failed_write_leaves_the_old_store_intact(
    tmp_path: Path, privs: list[PrivateKey], monkeypatch: pytest.MonkeyPatch
) -> None:
    store = TrustStore(tmp_path)
    store.add(trusted_key_from_public(privs[0].public_key(), name="alice"))
    before = store.path.read_bytes()

    def boom(*_a: object, **_k: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("signery._fs.os.replace", boom)
    with pytest.raises(OSError):
        store.add(trusted_key_from_public(privs[1].public_key(), name="bob"))
    assert store.path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [".trust.lock", "trust.json"]  # no temp file left


def _add_many(directory: str, pems: list[bytes], prefix: str) -> None:
    from signery.keys import load_public_key

    store = TrustStore(Path(directory))
    for i, pem in enumerate(pems):
        store.add(trusted_key_from_public(load_public_key(pem), name=f"{prefix}{i}"))


def test_concurrent_adds_from_two_processes_lose_nothing(tmp_path: Path) -> None:
    pems = [public_key_pem(generate_private_key("ed25519").public_key()) for _ in range(24)]
    ctx = multiprocessing.get_context("fork")
    procs = [
        ctx.Process(target=_add_many, args=(str(tmp_path), pems[:12], "a")),
        ctx.Process(target=_add_many, args=(str(tmp_path), pems[12:], "b")),
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    names = sorted(k.name for k in TrustStore(tmp_path).load())
    assert names == sorted([f"a{i}" for i in range(12)] + [f"b{i}" for i in range(12)])
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def _certificate(key: PrivateKey, cn: str, not_after: datetime) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - timedelta(days=1))
        .not_valid_after(not_after)
        .sign(key, hashes.SHA256())  # type: ignore[arg-type]
    )
    from cryptography.hazmat.primitives.serialization import Encoding

    return cert.public_bytes(Encoding.PEM)


def test_x509_certificate_is_accepted_with_its_expiry_and_common_name(tmp_path: Path, privs: list[PrivateKey]) -> None:
    key = privs[3]
    f = tmp_path / "cert.pem"
    f.write_bytes(b"\n" + _certificate(key, "Acme Release", NOW + timedelta(days=30)) + b"\n\n")
    k = load_trusted_key_file(f).key
    assert k.name == "Acme Release"
    assert k.key_id == key_id(key.public_key())
    assert k.expires == NOW + timedelta(days=30)
    earlier = load_trusted_key_file(f, name="acme", expires=NOW + timedelta(days=1)).key
    assert earlier.name == "acme" and earlier.expires == NOW + timedelta(days=1)
    later = load_trusted_key_file(f, expires=NOW + timedelta(days=99)).key
    assert later.expires == NOW + timedelta(days=30)  # a later --expires never outlives the certificate


def test_private_key_file_stores_only_the_public_half(tmp_path: Path, privs: list[PrivateKey]) -> None:
    f = tmp_path / "alice.private.pem"
    f.write_bytes(private_key_pem(privs[0]))
    loaded = load_trusted_key_file(f)
    assert loaded.dropped_secret
    assert loaded.key.material == public_key_pem(privs[0].public_key()).decode()
    store = TrustStore(tmp_path / "s")
    store.add(loaded.key)
    assert b"PRIVATE" not in store.path.read_bytes()


@pytest.mark.parametrize("content", [b"", b"hello", b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"])
def test_a_file_that_is_not_a_key_is_refused(tmp_path: Path, content: bytes) -> None:
    f = tmp_path / "notakey.pem"
    f.write_bytes(content)
    with pytest.raises(MalformedError) as info:
        load_trusted_key_file(f)
    assert info.value.subject == str(f)


def test_invalid_names_and_ids_are_refused(privs: list[PrivateKey]) -> None:
    with pytest.raises(MalformedError):
        trusted_key_from_public(privs[0].public_key(), name="bad\nname")
    with pytest.raises(MalformedError):
        trusted_key_from_public(privs[0].public_key(), name="")


def test_empty_trust_set_trusts_nothing(privs: list[PrivateKey]) -> None:
    empty = TrustSet()
    assert not empty and empty.get(key_id(privs[0].public_key())) is None
