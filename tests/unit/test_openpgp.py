"""OpenPGP keys and certificates: generation, parsing, secret keys, plain-key certificates, hostile input."""

from __future__ import annotations

import hashlib
import struct
from datetime import UTC, datetime, timedelta

import pysequoia
import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa, utils
from cryptography.hazmat.primitives.hashes import SHA256
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from signery import keys, openpgp
from signery.errors import MalformedError, SigneryError, UsageError
from signery.openpgp._keys import key_packet

CREATED = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


@pytest.fixture(scope="module")
def ed_key() -> openpgp.GeneratedKey:
    return openpgp.generate_key("Alice Example (work) <alice@example.org>", algorithm="ed25519", passphrase=b"pw")


@pytest.fixture(scope="module")
def rsa_key() -> openpgp.GeneratedKey:
    return openpgp.generate_key("Bob <bob@example.org>")


def test_generated_key_inspects_like_sequoia(ed_key: openpgp.GeneratedKey, rsa_key: openpgp.GeneratedKey) -> None:
    for key, name in ((ed_key, "Alice Example"), (rsa_key, "Bob")):
        info = openpgp.inspect_certificate(key.public_armored.encode(), source="k")
        assert info.fingerprint == key.fingerprint
        assert info.primary_name == name
        assert info.expires is None and not info.revoked and not info.was_secret
        assert info.signing_subkeys == []
        cert = pysequoia.Cert.from_bytes(key.public_armored.encode())
        assert cert.fingerprint == info.fingerprint
        assert [str(u) for u in cert.user_ids] == info.uids


def test_rsa_default_is_3072_bits(rsa_key: openpgp.GeneratedKey) -> None:
    cert = openpgp.parse_certificate(rsa_key.public_armored.encode(), source="k")
    assert isinstance(cert.primary.key.public_key, rsa.RSAPublicKey)
    assert cert.primary.key.public_key.key_size == 3072
    assert cert.primary.can_sign


def test_secret_key_keeps_only_public_part(ed_key: openpgp.GeneratedKey) -> None:
    info = openpgp.inspect_certificate(ed_key.secret_armored.encode(), source="alice.private.asc")
    assert info.was_secret
    assert "PUBLIC KEY BLOCK" in info.public_armored
    again = openpgp.inspect_certificate(info.public_armored.encode(), source="pub")
    assert not again.was_secret and again.fingerprint == ed_key.fingerprint


def test_binary_and_armored_input_agree(rsa_key: openpgp.GeneratedKey) -> None:
    binary, _ = openpgp.dearmor(rsa_key.public_armored.encode(), source="k")
    assert openpgp.inspect_certificate(binary, source="k") == openpgp.inspect_certificate(
        rsa_key.public_armored.encode(), source="k"
    )


def test_passphrase_required_and_checked(ed_key: openpgp.GeneratedKey) -> None:
    data = ed_key.secret_armored.encode()
    with pytest.raises(UsageError, match="passphrase"):
        openpgp.load_signer(data, source="alice.private.asc")
    with pytest.raises(UsageError, match="wrong passphrase"):
        openpgp.load_signer(data, passphrase=b"nope", source="alice.private.asc")
    signer = openpgp.load_signer(data, passphrase=b"pw", source="alice.private.asc")
    assert signer.fingerprint == ed_key.fingerprint and signer.pubkey_algorithm == 22
    assert "pw" not in repr(signer)


def test_public_certificate_cannot_sign(ed_key: openpgp.GeneratedKey) -> None:
    with pytest.raises(UsageError, match="secret key"):
        openpgp.load_signer(ed_key.public_armored.encode(), source="pub")


def test_unknown_algorithm_and_empty_passphrase_refused() -> None:
    with pytest.raises(UsageError, match="rsa-3072"):
        openpgp.generate_key("A <a@example.org>", algorithm="dsa-1024")
    with pytest.raises(UsageError, match="empty passphrase"):
        openpgp.generate_key("A <a@example.org>", algorithm="ed25519", passphrase=b"")


@pytest.mark.parametrize("kind", ["ed25519", "rsa"])
def test_certificate_from_private_key_is_stable(kind: str) -> None:
    key: openpgp.PrivateKey = (
        ed25519.Ed25519PrivateKey.generate() if kind == "ed25519" else rsa.generate_private_key(65537, 2048)
    )
    a = openpgp.certificate_from_private_key(key, uid="Svc <svc@example.org>", created=CREATED)
    b = openpgp.certificate_from_private_key(key, uid="Svc <svc@example.org>", created=CREATED)
    assert a == b
    info = openpgp.inspect_certificate(a.encode(), source="svc")
    signer = openpgp.signer_from_private_key(key, created=CREATED)
    assert signer.fingerprint == info.fingerprint
    other = openpgp.signer_from_private_key(key, created=CREATED + timedelta(seconds=1))
    assert other.fingerprint != info.fingerprint
    assert pysequoia.Cert.from_bytes(a.encode()).fingerprint == info.fingerprint


def test_sign_hash_raw_values() -> None:
    digest = hashlib.sha256(b"data").digest()
    rkey = rsa.generate_private_key(65537, 2048)
    value = openpgp.signer_from_private_key(rkey, created=CREATED).sign_hash(digest, hash_algorithm="sha256")
    rkey.public_key().verify(value, digest, padding.PKCS1v15(), utils.Prehashed(SHA256()))
    ekey = ed25519.Ed25519PrivateKey.generate()
    value = openpgp.signer_from_private_key(ekey, created=CREATED).sign_hash(digest, hash_algorithm="sha256")
    assert len(value) == 64
    ekey.public_key().verify(value, digest)
    with pytest.raises(UsageError):
        openpgp.signer_from_private_key(ekey, created=CREATED).sign_hash(digest, hash_algorithm="sha512")
    with pytest.raises(UsageError):
        openpgp.signer_from_private_key(ekey, created=CREATED).sign_hash(b"x" * 20, hash_algorithm="sha1")


def test_pem_key_is_not_an_openpgp_key() -> None:
    pem = keys.private_key_pem(ed25519.Ed25519PrivateKey.generate())
    with pytest.raises(UsageError, match="PEM key, not an OpenPGP secret key") as err:
        openpgp.load_signer(pem, source="alice.private.pem")
    assert err.value.hint is not None and "bind_signer" in err.value.hint


def test_gnu_dummy_stub_is_its_own_error() -> None:
    from signery.openpgp._secret import StubKeyError, decrypt_secret

    stub = bytes([254, 9, 101, 0]) + b"GNU\x01"  # AES-256, S2K 101 (gnu-dummy)
    with pytest.raises(StubKeyError, match="stub"):
        decrypt_secret(stub, b"pw", source="card.sec")
    with pytest.raises(MalformedError, match="AEAD"):
        decrypt_secret(bytes([253, 9, 2, 3]), b"pw", source="new.sec")


def test_certificate_for_any_signer_matches_the_plain_key_path() -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    via_signer = openpgp.certificate_for(keys.FileSigner(key), uid="Svc <svc@example.org>", created=CREATED)
    assert via_signer == openpgp.certificate_from_private_key(key, uid="Svc <svc@example.org>", created=CREATED)
    bound = openpgp.bind_signer(keys.FileSigner(key), certificate=via_signer)
    assert bound.fingerprint == openpgp.bind_signer(keys.FileSigner(key), created=CREATED).fingerprint
    assert bound.certificate is not None and "PUBLIC KEY BLOCK" in bound.certificate


COMPAT_NAMES = (
    "CLOCK_SKEW",
    "HASH_IDS",
    "PK_NAMES",
    "SIG_BINARY",
    "SIG_PRIMARY_BINDING",
    "SIG_SUBKEY_BINDING",
    "SIG_SUBKEY_REVOCATION",
    "STRONG_HASHES",
    "TAG_MARKER",
    "TAG_PUBLIC_SUBKEY",
    "TAG_SIGNATURE",
    "TAG_USER_ID",
    "Certificate",
    "Component",
    "KeyPacket",
    "OpenPGPSigner",
    "SignaturePacket",
    "armor",
    "check_signature_value",
    "dearmor",
    "encode_packet",
    "is_armored",
    "iter_packets",
    "make_signature",
    "mpi",
    "parse_certificate",
    "parse_key_packet",
    "parse_signature",
    "subpacket",
    "GeneratedKey",
    "PrivateKey",
    "certificate_from_private_key",
    "signer_from_private_key",
    "inspect_certificate",
    "generate_key",
    "load_signer",
)


def test_packet_level_names_stay_importable() -> None:
    """The split into private modules keeps every name callers imported from signery.openpgp."""
    for name in COMPAT_NAMES:
        assert hasattr(openpgp, name), name
    assert all(hasattr(openpgp, name) for name in openpgp.__all__)


def test_expiry_is_reported() -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    expires = CREATED + timedelta(days=30)
    cert = openpgp.certificate_from_private_key(key, uid="E <e@example.org>", created=CREATED, expires=expires)
    assert openpgp.inspect_certificate(cert.encode(), source="e").expires == expires
    assert pysequoia.Cert.from_bytes(cert.encode()).expiration == expires


def test_naive_creation_time_refused() -> None:
    with pytest.raises(UsageError, match="timezone"):
        openpgp.signer_from_private_key(ed25519.Ed25519PrivateKey.generate(), created=datetime(2026, 1, 1))


# -- hostile input ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"hello world",
        b"-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA\n-----END PUBLIC KEY-----\n",
        b"-----BEGIN PGP PUBLIC KEY BLOCK-----\n\n!!!!\n-----END PGP PUBLIC KEY BLOCK-----\n",
        b"-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nAAAA\n",
        b"\xc6\xff\xff\xff\xff\xff",  # claims a 4 GiB packet
        b"\x99\x00\x05\x05\x00\x00\x00\x00",  # v5 key
    ],
)
def test_not_openpgp_is_malformed(data: bytes) -> None:
    with pytest.raises(MalformedError):
        openpgp.inspect_certificate(data, source="bad.asc")


def test_armor_checksum_is_checked(rsa_key: openpgp.GeneratedKey) -> None:
    lines = rsa_key.public_armored.splitlines()
    crc_index = next(i for i, line in enumerate(lines) if line.startswith("="))
    lines[crc_index] = "=AAAA"
    with pytest.raises(MalformedError, match="checksum"):
        openpgp.inspect_certificate("\n".join(lines).encode(), source="k")


def test_two_certificates_in_one_file_refused(ed_key: openpgp.GeneratedKey, rsa_key: openpgp.GeneratedKey) -> None:
    both = (ed_key.public_armored + rsa_key.public_armored).encode()
    with pytest.raises(MalformedError, match="2 certificates"):
        openpgp.inspect_certificate(both, source="ring.asc")


def test_forged_user_id_is_not_bound(rsa_key: openpgp.GeneratedKey) -> None:
    """Swapping the UID packet keeps the self-signature but breaks it: no valid self-signature remains."""
    packets = list(openpgp.iter_packets(openpgp.dearmor(rsa_key.public_armored.encode(), source="k")[0], source="k"))
    forged = b"".join(
        openpgp.encode_packet(p.tag, b"Mallory <m@example.org>" if p.tag == openpgp.TAG_USER_ID else p.body)
        for p in packets
    )
    with pytest.raises(MalformedError, match="no valid self-signature"):
        openpgp.inspect_certificate(forged, source="forged")


def test_stolen_subkey_without_back_signature_cannot_sign() -> None:
    """Binding someone else's key as a signing subkey needs that key's back-signature (0x19)."""
    owner = ed25519.Ed25519PrivateKey.generate()
    victim = ed25519.Ed25519PrivateKey.generate()
    key = key_packet(owner.public_key(), CREATED)
    sub = key_packet(victim.public_key(), CREATED)
    cert = openpgp.dearmor(
        openpgp.certificate_from_private_key(owner, uid="O <o@example.org>", created=CREATED).encode(), source="o"
    )[0]
    h = hashlib.sha256(key.hash_prefix() + sub.hash_prefix())
    binding = openpgp.make_signature(
        openpgp.signer_from_private_key(owner, created=CREATED),
        sig_type=openpgp.SIG_SUBKEY_BINDING,
        created=CREATED,
        data_hash=h,
        extra_hashed=openpgp.subpacket(27, b"\x02"),
    )
    data = cert + openpgp.encode_packet(openpgp.TAG_PUBLIC_SUBKEY, sub.public_body) + binding
    info = openpgp.inspect_certificate(data, source="o")
    assert info.signing_subkeys == []


def test_sha1_self_signature_refused() -> None:
    key = rsa.generate_private_key(65537, 2048)
    kp = key_packet(key.public_key(), CREATED)
    uid = b"Old <old@example.org>"
    hashed = openpgp.subpacket(2, struct.pack(">I", int(CREATED.timestamp()))) + openpgp.subpacket(27, b"\x03")
    prefix = bytes([4, 0x13, 1, 2]) + struct.pack(">H", len(hashed)) + hashed
    h = hashlib.sha1(kp.hash_prefix() + b"\xb4" + struct.pack(">I", len(uid)) + uid + prefix)
    h.update(b"\x04\xff" + struct.pack(">I", len(prefix)))
    from cryptography.hazmat.primitives.hashes import SHA1

    value = key.sign(h.digest(), padding.PKCS1v15(), utils.Prehashed(SHA1()))  # noqa: S303 - building the weak self-signature we refuse
    body = prefix + b"\x00\x00" + h.digest()[:2] + openpgp.mpi(value)
    data = openpgp.encode_packet(6, kp.public_body) + openpgp.encode_packet(13, uid) + openpgp.encode_packet(2, body)
    with pytest.raises(MalformedError, match="SHA-1"):
        openpgp.inspect_certificate(data, source="old")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_mutated_certificates_fail_cleanly(rsa_key: openpgp.GeneratedKey, data: st.DataObject) -> None:
    raw = bytearray(openpgp.dearmor(rsa_key.public_armored.encode(), source="k")[0])
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(1, len(raw)))
    try:
        info = openpgp.inspect_certificate(bytes(raw[:cut]), source="fuzz")
    except SigneryError:
        return
    assert len(info.fingerprint) == 40


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_fail_cleanly(data: bytes) -> None:
    with pytest.raises(SigneryError):
        openpgp.inspect_certificate(data, source="fuzz")
