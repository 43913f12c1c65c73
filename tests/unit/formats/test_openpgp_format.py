"""OpenPGP detached signatures: signing, verification reasons, several packets, hostile signature files."""

from __future__ import annotations

import hashlib
import struct
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from signery import openpgp
from signery.errors import MalformedError, Reason, SigneryError, UsageError
from signery.formats import openpgp as fmt
from signery.keys import FileSigner
from signery.openpgp._generate import _certificate_packets
from signery.openpgp._keys import key_packet
from signery.trust import Constraints, TrustedKey, TrustSet, load_trusted_key_file

CREATED = datetime(2026, 1, 1, tzinfo=UTC)


def _entry(cert: str, tmp_path: Path, name: str) -> TrustedKey:
    p = tmp_path / f"{name}.public.asc"
    p.write_text(cert)
    return replace(load_trusted_key_file(p).key, name=name)


@pytest.fixture(scope="module")
def alice_key() -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.generate()


@pytest.fixture(scope="module")
def bob_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(65537, 2048)


@pytest.fixture()
def alice(alice_key: ed25519.Ed25519PrivateKey) -> openpgp.OpenPGPSigner:
    return openpgp.signer_from_private_key(alice_key, created=CREATED)


@pytest.fixture()
def bob(bob_key: rsa.RSAPrivateKey) -> openpgp.OpenPGPSigner:
    return openpgp.signer_from_private_key(bob_key, created=CREATED)


@pytest.fixture()
def trust(alice_key: ed25519.Ed25519PrivateKey, bob_key: rsa.RSAPrivateKey, tmp_path: Path) -> TrustSet:
    a = openpgp.certificate_from_private_key(alice_key, uid="Alice <alice@example.org>", created=CREATED)
    b = openpgp.certificate_from_private_key(bob_key, uid="Bob <bob@example.org>", created=CREATED)
    return TrustSet([_entry(a, tmp_path, "alice"), _entry(b, tmp_path, "bob")])


@pytest.fixture()
def pkg(tmp_path: Path) -> Path:
    p = tmp_path / "plugin-0.1.0.tar.gz"
    p.write_bytes(b"\x1f\x8b" + bytes(range(256)) * 5000)
    return p


def test_sign_writes_binary_sig_beside_file(pkg: Path, alice: openpgp.OpenPGPSigner, trust: TrustSet) -> None:
    out = fmt.sign(pkg, alice)
    assert out == pkg.with_name(pkg.name + ".sig")
    assert out.read_bytes()[0] & 0x80
    assert fmt.detect(pkg)
    result = fmt.verify(pkg, trust=trust)
    assert result.verified
    (check,) = result.signatures
    assert check.key_id == alice.fingerprint and check.key_name == "alice"
    assert check.claims["hash"] == openpgp.fastest_hash().upper()  # the faster of SHA-256 and SHA-512 here


def test_default_hash_follows_the_cpu_and_stays_overridable(pkg: Path, alice: openpgp.OpenPGPSigner) -> None:
    fastest = openpgp.fastest_hash()
    assert fastest in ("sha256", "sha512") and openpgp.fastest_hash() is fastest  # measured once
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        flags = ""
    if " sha_ni" in flags:  # x86 SHA extensions: SHA-256 runs about twice as fast as SHA-512
        assert fastest == "sha256"
    for name, hash_id in (("sha512", 10), ("sha384", 9), (None, 8 if fastest == "sha256" else 10)):
        sig = fmt.sign(pkg, alice, hash_algorithm=name)
        assert openpgp.parse_signature(sig.read_bytes()[2:], source="s").hash_algorithm == hash_id
    with pytest.raises(UsageError, match="sha256, sha384 or sha512"):
        fmt.sign(pkg, alice, hash_algorithm="sha1")


# -- one Signer: any keys.Signer signs OpenPGP once bound to an identity -------------------------------------------


def test_plain_signer_without_identity_is_a_usage_error(pkg: Path, alice_key: ed25519.Ed25519PrivateKey) -> None:
    with pytest.raises(UsageError, match="is not an OpenPGP key") as err:
        fmt.sign(pkg, FileSigner(alice_key))
    assert err.value.hint is not None and "certificate=" in err.value.hint
    assert not pkg.with_name(pkg.name + ".sig").exists()


def test_plain_signer_bound_by_certificate_or_creation_time(
    pkg: Path, alice_key: ed25519.Ed25519PrivateKey, bob_key: rsa.RSAPrivateKey, trust: TrustSet
) -> None:
    cert = openpgp.certificate_from_private_key(alice_key, uid="Alice <alice@example.org>", created=CREATED)
    for kwargs in ({"certificate": cert}, {"certificate": cert.encode()}, {"created": CREATED}):
        fmt.sign(pkg, FileSigner(alice_key), **kwargs)  # type: ignore[arg-type]
        result = fmt.verify(pkg, trust=trust)
        assert result.verified and result.signatures[0].key_name == "alice"
    # RSA through the same plain signer protocol (PKCS#1 v1.5 over the digest)
    fmt.sign(pkg, FileSigner(bob_key), created=CREATED)
    assert fmt.verify(pkg, trust=trust).signatures[0].key_name == "bob"
    # a certificate that does not hold the signer's key is refused before anything is written
    with pytest.raises(UsageError, match="does not hold this signer's public key"):
        fmt.sign(pkg, FileSigner(bob_key), certificate=cert)


def test_ecdsa_file_signer_signs_openpgp(pkg: Path, tmp_path: Path) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec

    for curve, hash_id in ((ec.SECP256R1(), None), (ec.SECP384R1(), 9), (ec.SECP521R1(), 10)):
        signer = FileSigner(ec.generate_private_key(curve))
        cert = openpgp.certificate_for(signer, uid="E <e@example.org>", created=CREATED)
        bound = openpgp.bind_signer(signer, certificate=cert)
        assert (
            bound.pubkey_algorithm == 19
            and bound.fingerprint == openpgp.inspect_certificate(cert.encode(), source="e").fingerprint
        )
        sig = fmt.sign(pkg, bound)
        packet = openpgp.parse_signature(sig.read_bytes()[2:], source="s")
        if hash_id is not None:  # P-384 and P-521 sign with a hash at least as large as the curve
            assert packet.hash_algorithm in (hash_id, 10)
        assert fmt.verify(pkg, trust=TrustSet([_entry(cert, tmp_path, curve.name)])).verified


@pytest.mark.parametrize("hash_algorithm", ["sha256", "sha384", "sha512"])
def test_armored_sig_as_elastic(pkg: Path, bob: openpgp.OpenPGPSigner, trust: TrustSet, hash_algorithm: str) -> None:
    out = fmt.sign(pkg, bob, armor=True, hash_algorithm=hash_algorithm)
    assert out.read_text().startswith("-----BEGIN PGP SIGNATURE-----")
    assert fmt.verify(pkg, trust=trust).verified


def test_finds_asc_when_no_sig(pkg: Path, alice: openpgp.OpenPGPSigner, trust: TrustSet) -> None:
    fmt.sign(pkg, alice, output=pkg.with_name(pkg.name + ".asc"), armor=True)
    assert fmt.verify(pkg, trust=trust).verified
    assert fmt.inspect(pkg)["signatures"][0]["issuer_fingerprint"] == alice.fingerprint


def test_unsigned(pkg: Path, trust: TrustSet) -> None:
    result = fmt.verify(pkg, trust=trust)
    assert not result.verified and result.reason is Reason.UNSIGNED
    assert not fmt.detect(pkg)


def test_tampered_file_is_bad_signature(pkg: Path, alice: openpgp.OpenPGPSigner, trust: TrustSet) -> None:
    fmt.sign(pkg, alice)
    with pkg.open("ab") as fh:
        fh.write(b"!")
    result = fmt.verify(pkg, trust=trust)
    assert result.reason is Reason.BAD_SIGNATURE


def test_unknown_key_names_fingerprint(pkg: Path, tmp_path: Path) -> None:
    stranger = openpgp.signer_from_private_key(ed25519.Ed25519PrivateKey.generate(), created=CREATED)
    fmt.sign(pkg, stranger)
    result = fmt.verify(pkg, trust=TrustSet())
    assert result.reason is Reason.UNKNOWN_KEY
    assert result.fault == stranger.fingerprint
    assert stranger.fingerprint in result.message


def test_several_packets_each_reported_and_threshold(
    pkg: Path, alice: openpgp.OpenPGPSigner, bob: openpgp.OpenPGPSigner, trust: TrustSet, tmp_path: Path
) -> None:
    stranger = openpgp.signer_from_private_key(ed25519.Ed25519PrivateKey.generate(), created=CREATED)
    parts = [fmt.sign(pkg, s, output=tmp_path / f"{i}.sig").read_bytes() for i, s in enumerate([alice, stranger, bob])]
    sig = tmp_path / "all.sig"
    sig.write_bytes(b"".join(parts))
    result = fmt.verify(pkg, trust=trust, signature=sig)
    assert [c.status for c in result.signatures] == ["valid", "unknown-key", "valid"]
    assert result.verified
    assert fmt.verify(pkg, trust=trust, signature=sig, threshold=2).verified
    result3 = fmt.verify(pkg, trust=trust, signature=sig, threshold=3)
    assert not result3.verified


def test_same_key_twice_does_not_meet_threshold(
    pkg: Path, alice: openpgp.OpenPGPSigner, trust: TrustSet, tmp_path: Path
) -> None:
    one = fmt.sign(pkg, alice, output=tmp_path / "1.sig").read_bytes()
    two = fmt.sign(pkg, alice, output=tmp_path / "2.sig", hash_algorithm="sha256").read_bytes()
    (tmp_path / "x.sig").write_bytes(one + two)
    assert not fmt.verify(pkg, trust=trust, signature=tmp_path / "x.sig", threshold=2).verified


def test_trust_entry_expiry_and_revocation(pkg: Path, alice: openpgp.OpenPGPSigner, trust: TrustSet) -> None:
    fmt.sign(pkg, alice)
    keys = list(trust)
    expired = TrustSet([replace(keys[0], expires=CREATED + timedelta(days=1)), keys[1]])
    assert fmt.verify(pkg, trust=expired).reason is Reason.EXPIRED_KEY
    revoked = TrustSet([replace(keys[0], revoked=True), keys[1]])
    assert fmt.verify(pkg, trust=revoked).reason is Reason.REVOKED_KEY


def test_key_expiry_from_certificate(pkg: Path, tmp_path: Path) -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    now = datetime.now(UTC).replace(microsecond=0)
    cert = openpgp.certificate_from_private_key(
        key, uid="Short <s@example.org>", created=now - timedelta(days=2), expires=now + timedelta(days=1)
    )
    trust = TrustSet([_entry(cert, tmp_path, "short")])
    fmt.sign(pkg, openpgp.signer_from_private_key(key, created=now - timedelta(days=2)))
    assert fmt.verify(pkg, trust=trust).verified
    later = fmt.verify(pkg, trust=trust, now=now + timedelta(days=2))
    assert later.reason is Reason.EXPIRED_KEY


def test_constraints_limit_format(pkg: Path, alice: openpgp.OpenPGPSigner, trust: TrustSet) -> None:
    fmt.sign(pkg, alice)
    keys = list(trust)
    limited = TrustSet([replace(keys[0], constraints=Constraints(formats=("native",)))])
    assert fmt.verify(pkg, trust=limited).reason is Reason.POLICY_VIOLATION


def test_future_signature_refused(pkg: Path, alice: openpgp.OpenPGPSigner, trust: TrustSet) -> None:
    fmt.sign(pkg, alice, now=datetime.now(UTC) + timedelta(days=3))
    assert fmt.verify(pkg, trust=trust).reason is Reason.BAD_SIGNATURE


def test_key_without_sign_flag_refused(pkg: Path, tmp_path: Path) -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    kp, uid_packet, selfsig = _certificate_packets(
        FileSigner(key), uid="C <c@example.org>", created=CREATED, flags=0x01
    )
    cert = openpgp.armor(openpgp.encode_packet(6, kp.public_body) + uid_packet + selfsig, "PUBLIC KEY BLOCK")
    trust = TrustSet([_entry(cert, tmp_path, "certonly")])
    fmt.sign(pkg, openpgp.signer_from_private_key(key, created=CREATED))
    result = fmt.verify(pkg, trust=trust)
    assert result.reason is Reason.BAD_SIGNATURE and "not allowed to sign" in result.message


def _raw_signature(fpr: str, *, hash_id: int, version: int = 4, sig_type: int = 0) -> bytes:
    hashed = openpgp.subpacket(2, struct.pack(">I", int(CREATED.timestamp())))
    hashed += openpgp.subpacket(33, b"\x04" + bytes.fromhex(fpr))
    body = bytes([version, sig_type, 22, hash_id]) + struct.pack(">H", len(hashed)) + hashed
    body += b"\x00\x00" + b"\x00\x00" + openpgp.mpi(b"\x01" * 32) + openpgp.mpi(b"\x01" * 32)
    return openpgp.encode_packet(2, body)


@pytest.mark.parametrize(("hash_id", "name"), [(2, "SHA1"), (1, "MD5"), (3, "RIPEMD160"), (11, "SHA224")])
def test_weak_hashes_refused_by_name(
    pkg: Path, alice: openpgp.OpenPGPSigner, trust: TrustSet, tmp_path: Path, hash_id: int, name: str
) -> None:
    sig = tmp_path / "weak.sig"
    sig.write_bytes(_raw_signature(alice.fingerprint, hash_id=hash_id))
    result = fmt.verify(pkg, trust=trust, signature=sig)
    assert result.reason is Reason.BAD_SIGNATURE
    assert name in result.message


def test_text_and_v3_signatures_refused(
    pkg: Path, alice: openpgp.OpenPGPSigner, trust: TrustSet, tmp_path: Path
) -> None:
    sig = tmp_path / "odd.sig"
    sig.write_bytes(_raw_signature(alice.fingerprint, hash_id=10, sig_type=1) + b"\xc2\x03\x03\x00\x00")
    result = fmt.verify(pkg, trust=trust, signature=sig)
    assert [c.status for c in result.signatures] == ["bad-signature", "bad-signature"]


def test_forged_value_is_bad_signature(
    pkg: Path, alice: openpgp.OpenPGPSigner, trust: TrustSet, tmp_path: Path
) -> None:
    good = fmt.sign(pkg, alice).read_bytes()
    for pos in (len(good) - 1, len(good) - 40, 12):
        forged = bytearray(good)
        forged[pos] ^= 0x01
        sig = tmp_path / "forged.sig"
        sig.write_bytes(bytes(forged))
        try:
            result = fmt.verify(pkg, trust=trust, signature=sig)
        except MalformedError:
            continue
        assert not result.verified


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"not a signature",
        b"-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nxjMEY\n=AAAA\n-----END PGP PUBLIC KEY BLOCK-----\n",
        openpgp.encode_packet(11, b"b\x00\x00\x00\x00\x00hello"),  # a literal data packet: not detached
        b"\xc2" + b"\xff" + struct.pack(">I", 1 << 30),
    ],
)
def test_malformed_signature_files(pkg: Path, trust: TrustSet, tmp_path: Path, content: bytes) -> None:
    sig = tmp_path / "bad.sig"
    sig.write_bytes(content)
    with pytest.raises(MalformedError):
        fmt.verify(pkg, trust=trust, signature=sig)


def test_oversized_signature_file(pkg: Path, trust: TrustSet, tmp_path: Path) -> None:
    sig = tmp_path / "huge.sig"
    sig.write_bytes(b"\x00" * (fmt.MAX_SIGNATURE_FILE_BYTES + 1))
    with pytest.raises(MalformedError, match="too large"):
        fmt.verify(pkg, trust=trust, signature=sig)


def test_too_many_signatures(pkg: Path, alice: openpgp.OpenPGPSigner, trust: TrustSet, tmp_path: Path) -> None:
    one = fmt.sign(pkg, alice).read_bytes()
    sig = tmp_path / "many.sig"
    sig.write_bytes(one * (fmt.MAX_SIGNATURES + 1))
    with pytest.raises(MalformedError):
        fmt.verify(pkg, trust=trust, signature=sig)


def test_missing_subject(tmp_path: Path, trust: TrustSet) -> None:
    with pytest.raises(UsageError):
        fmt.verify(tmp_path / "nope.tar.gz", trust=trust)


def test_streaming_hash_matches_hashlib(pkg: Path) -> None:
    got = fmt._hash_file(pkg, {"sha256"})["sha256"].hexdigest()
    assert got == hashlib.sha256(pkg.read_bytes()).hexdigest()


def _cert_with_subkey(
    primary: ed25519.Ed25519PrivateKey,
    sub: ed25519.Ed25519PrivateKey,
    *,
    sub_expires_after: timedelta | None = None,
    revoke_sub: bool = False,
) -> str:
    """A certify-only primary with an Ed25519 signing subkey (binding + back-signature), as gpg makes."""
    kp, uid_packet, selfsig = _certificate_packets(
        FileSigner(primary), uid="P <p@example.org>", created=CREATED, flags=1
    )
    sp = key_packet(sub.public_key(), CREATED)
    parts = kp.hash_prefix() + sp.hash_prefix()
    back = openpgp.make_signature(
        openpgp.signer_from_private_key(sub, created=CREATED),
        sig_type=openpgp.SIG_PRIMARY_BINDING,
        created=CREATED,
        data_hash=hashlib.sha256(parts),
    )
    back_body = next(openpgp.iter_packets(back, source="b")).body
    extra = openpgp.subpacket(27, b"\x02") + openpgp.subpacket(32, back_body)
    if sub_expires_after is not None:
        extra += openpgp.subpacket(9, struct.pack(">I", int(sub_expires_after.total_seconds())))
    psigner = openpgp.signer_from_private_key(primary, created=CREATED)
    binding = openpgp.make_signature(
        psigner, sig_type=openpgp.SIG_SUBKEY_BINDING, created=CREATED, data_hash=hashlib.sha256(parts),
        extra_hashed=extra,
    )  # fmt: skip
    data = openpgp.encode_packet(6, kp.public_body) + uid_packet + selfsig
    data += openpgp.encode_packet(14, sp.public_body) + binding
    if revoke_sub:
        data += openpgp.make_signature(
            psigner, sig_type=openpgp.SIG_SUBKEY_REVOCATION, created=CREATED + timedelta(days=1),
            data_hash=hashlib.sha256(parts),
        )  # fmt: skip
    return openpgp.armor(data, "PUBLIC KEY BLOCK")


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({}, None),
        ({"revoke_sub": True}, Reason.REVOKED_KEY),
        ({"sub_expires_after": timedelta(days=2)}, Reason.EXPIRED_KEY),
    ],
)
def test_signing_subkey_states(pkg: Path, tmp_path: Path, kwargs: dict[str, object], reason: Reason | None) -> None:
    primary, sub = ed25519.Ed25519PrivateKey.generate(), ed25519.Ed25519PrivateKey.generate()
    cert = _cert_with_subkey(primary, sub, **kwargs)  # type: ignore[arg-type]
    info = openpgp.inspect_certificate(cert.encode(), source="p")
    sub_signer = openpgp.signer_from_private_key(sub, created=CREATED)
    assert info.signing_subkeys == [sub_signer.fingerprint]
    trust = TrustSet([_entry(cert, tmp_path, "p")])
    fmt.sign(pkg, sub_signer, now=CREATED + timedelta(hours=1))
    result = fmt.verify(pkg, trust=trust)
    assert result.reason is reason, result.to_dict()
    if reason is None:
        assert result.signatures[0].key_id == info.fingerprint
        assert result.signatures[0].claims["signing_key"] == sub_signer.fingerprint
    # the certify-only primary may not sign data itself
    fmt.sign(pkg, openpgp.signer_from_private_key(primary, created=CREATED))
    assert fmt.verify(pkg, trust=trust).reason is Reason.BAD_SIGNATURE


def test_binding_to_a_certificate_picks_the_component_and_says_why_not(pkg: Path, tmp_path: Path) -> None:
    primary, sub = ed25519.Ed25519PrivateKey.generate(), ed25519.Ed25519PrivateKey.generate()
    cert = _cert_with_subkey(primary, sub)
    bound = openpgp.bind_signer(FileSigner(sub), certificate=cert)
    assert bound.fingerprint == key_packet(sub.public_key(), CREATED).fingerprint  # the subkey signs
    assert openpgp.bind_signer(bound) is bound  # already bound: as it is
    fmt.sign(pkg, bound, now=CREATED + timedelta(hours=1))
    assert fmt.verify(pkg, trust=TrustSet([_entry(cert, tmp_path, "p")])).verified
    with pytest.raises(UsageError, match="not allowed to sign"):  # the certify-only primary
        openpgp.bind_signer(FileSigner(primary), certificate=cert)
    with pytest.raises(UsageError, match="is revoked"):
        openpgp.bind_signer(FileSigner(sub), certificate=_cert_with_subkey(primary, sub, revoke_sub=True))
    with pytest.raises(UsageError, match="expired on"):
        openpgp.bind_signer(
            FileSigner(sub), certificate=_cert_with_subkey(primary, sub, sub_expires_after=timedelta(1))
        )
    with pytest.raises(UsageError, match="exactly one"):
        openpgp.bind_signer(FileSigner(sub), certificate=cert, created=CREATED)


def test_bound_signer_is_a_signer_that_signs_every_format(pkg: Path, alice: openpgp.OpenPGPSigner) -> None:
    from signery.formats import native
    from signery.keys import Signer, key_id
    from signery.trust import trusted_key_from_public

    assert isinstance(alice, Signer) and alice.key_id == key_id(alice.public_key())
    out = native.sign(pkg, alice)  # the same object, in another format, under signery's own key id
    trust = TrustSet([trusted_key_from_public(alice.public_key(), name="alice")])
    assert native.verify(pkg, trust=trust, signature=out).verified


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_mutated_signature_files_never_verify_or_crash(
    pkg: Path, alice: openpgp.OpenPGPSigner, trust: TrustSet, tmp_path: Path, data: st.DataObject
) -> None:
    good = tmp_path / "good.sig"
    if not good.exists():
        fmt.sign(pkg, alice, output=good)
    raw = bytearray(good.read_bytes())
    i = data.draw(st.integers(0, len(raw) - 1))
    raw[i] ^= data.draw(st.integers(1, 255))
    bad = tmp_path / "bad.sig"
    bad.write_bytes(bytes(raw[: data.draw(st.integers(1, len(raw)))]))
    try:
        result = fmt.verify(pkg, trust=trust, signature=bad)
    except SigneryError:
        return
    # flipping a byte in the unhashed area (issuer key id hint) may leave a valid signature; nothing else may
    if result.verified:
        parsed = openpgp.parse_signature(good.read_bytes()[2:], source="good")
        unhashed_start = 2 + len(parsed.hashed_prefix)
        assert unhashed_start <= i < unhashed_start + 2 + 10, i


def test_progress_reads_the_file_once(pkg: Path, alice: openpgp.OpenPGPSigner, trust: TrustSet) -> None:
    seen: list[int] = []
    fmt.sign(pkg, alice, progress=seen.append)
    assert sum(seen) == pkg.stat().st_size
    seen.clear()
    assert fmt.verify(pkg, trust=trust, progress=seen.append).verified
    assert sum(seen) == pkg.stat().st_size


def test_progress_of_several_formats_adds_up_to_the_file(
    pkg: Path, alice: openpgp.OpenPGPSigner, trust: TrustSet, tmp_path: Path
) -> None:
    from signery.formats import detect_formats, native, verify_detected
    from signery.keys import FileSigner
    from signery.trust import trusted_key_from_public

    fmt.sign(pkg, alice)
    native_key = ed25519.Ed25519PrivateKey.generate()
    native.sign(pkg, FileSigner(native_key))  # detached, beside it
    assert detect_formats(pkg) == ["native", "openpgp"]
    seen: list[int] = []
    result = verify_detected(pkg, trust=trust, progress=seen.append)
    assert result.verified  # alice's OpenPGP signature; the native one is by a key not trusted here
    assert sum(seen) == pkg.stat().st_size  # only OpenPGP read it (native hashes nothing for an unknown key)
    seen.clear()
    trust = trust.union(TrustSet([trusted_key_from_public(native_key.public_key(), name="n")]))
    both = verify_detected(pkg, trust=trust, threshold=2, progress=seen.append)
    assert both.verified and len(both.signatures) == 2
    assert sum(seen) == pkg.stat().st_size  # both read all of it; the bar ends full, not at twice the file
