"""Raw RSA (PKCS#1 v1.5 without DigestInfo) over SHA-256 of a file: both directions against openssl pkeyutl, the
verdicts, signers that cannot do it, and hostile signature files."""

from __future__ import annotations

import hashlib
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils
from cryptography.x509.oid import NameOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from signery.errors import EnvironmentFailure, MalformedError, Reason, UsageError
from signery.formats import get_format, rawrsa
from signery.keys import FileSigner, HashName, PublicKey, RsaPadding, private_key_pem
from signery.trust import Constraints, TrustSet, trusted_key_from_public
from support import require_tool


@pytest.fixture(scope="module")
def key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(65537, 2048)


@pytest.fixture(scope="module")
def other() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(65537, 2048)


@pytest.fixture()
def files(tmp_path: Path, key: rsa.RSAPrivateKey) -> dict[str, Path]:
    """The flasher's inputs: the image, its binary SHA-256, the signer's key and a certificate (balenaOS kmod)."""
    image = tmp_path / "balena.img"
    image.write_bytes(b"balenaOS image " * 5000)
    digest = tmp_path / "digest.bin"
    digest.write_bytes(hashlib.sha256(image.read_bytes()).digest())
    key_pem = tmp_path / "kmod.key"
    key_pem.write_bytes(private_key_pem(key))
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "balenaOS kmod signing key")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(datetime(2025, 1, 1, tzinfo=UTC))
        .not_valid_after(datetime(2036, 1, 1, tzinfo=UTC))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_pem = tmp_path / "kmod.crt"
    cert_pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return {"image": image, "digest": digest, "key": key_pem, "cert": cert_pem}


def _trust(*keys: rsa.RSAPrivateKey, **constraints: tuple[str, ...]) -> TrustSet:
    return TrustSet(
        trusted_key_from_public(k.public_key(), name=f"k{i}", constraints=Constraints(**constraints))
        for i, k in enumerate(keys)
    )


def _openssl(*args: str | Path) -> subprocess.CompletedProcess[str]:
    tool = require_tool("openssl")
    return subprocess.run([tool, *map(str, args)], capture_output=True, text=True, check=False, timeout=60)


def test_signery_signs_and_openssl_pkeyutl_verifies_as_the_flasher_does(
    key: rsa.RSAPrivateKey, files: dict[str, Path]
) -> None:
    fmt = get_format("raw-rsa")
    assert fmt is rawrsa.FORMAT
    sig = fmt.sign(files["image"], FileSigner(key))
    assert sig == files["image"].with_name("balena.img.sig")
    assert len(sig.read_bytes()) == 256
    # resin-init-flasher: openssl pkeyutl -verify -in <binary sha256> -certin -inkey kmod.crt -sigfile IMG.sig
    proc = _openssl("pkeyutl", "-verify", "-in", files["digest"], "-certin", "-inkey", files["cert"], "-sigfile", sig)
    assert proc.returncode == 0, proc.stderr
    assert "Signature Verified Successfully" in proc.stdout
    # Deterministic, and what pkeyutl -sign itself makes.
    ref = files["image"].with_name("ref.sig")
    assert _openssl("pkeyutl", "-sign", "-inkey", files["key"], "-in", files["digest"], "-out", ref).returncode == 0
    assert sig.read_bytes() == ref.read_bytes()
    # It is not a DigestInfo signature: openssl dgst -verify refuses it.
    pub = files["image"].with_name("pub.pem")
    pub.write_bytes(
        key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    assert _openssl("dgst", "-sha256", "-verify", pub, "-signature", sig, files["image"]).returncode != 0


def test_openssl_pkeyutl_signs_and_signery_verifies(key: rsa.RSAPrivateKey, files: dict[str, Path]) -> None:
    sig = files["image"].with_name("balena.img.sig")
    proc = _openssl("pkeyutl", "-sign", "-inkey", files["key"], "-in", files["digest"], "-out", sig)
    assert proc.returncode == 0, proc.stderr
    result = rawrsa.FORMAT.verify(files["image"], trust=_trust(key))
    assert result.verified, result.message
    assert result.signatures[0].claims["digest"] == files["digest"].read_bytes().hex()
    assert rawrsa.FORMAT.detect(files["image"]) and rawrsa.FORMAT.may_carry(files["image"])


def test_a_digestinfo_signature_is_a_bad_signature_not_tampering(
    key: rsa.RSAPrivateKey, files: dict[str, Path]
) -> None:
    sig = files["image"].with_name("balena.img.sig")
    assert _openssl("dgst", "-sha256", "-sign", files["key"], "-out", sig, files["image"]).returncode == 0
    result = rawrsa.FORMAT.verify(files["image"], trust=_trust(key))
    assert result.reason is Reason.BAD_SIGNATURE
    assert "DigestInfo" in result.message


def test_verdicts(key: rsa.RSAPrivateKey, other: rsa.RSAPrivateKey, files: dict[str, Path]) -> None:
    image = files["image"]
    assert rawrsa.FORMAT.verify(image, trust=_trust(key)).reason is Reason.UNSIGNED
    rawrsa.FORMAT.sign(image, FileSigner(key))
    assert rawrsa.FORMAT.verify(image, trust=_trust(other)).reason is Reason.UNKNOWN_KEY
    assert rawrsa.FORMAT.verify(image, trust=_trust(other, key)).verified
    assert rawrsa.FORMAT.verify(image, trust=_trust(key, formats=("native",))).reason is Reason.POLICY_VIOLATION
    image.write_bytes(image.read_bytes() + b"!")
    assert rawrsa.FORMAT.verify(image, trust=_trust(key)).reason is Reason.TAMPERED
    (image.with_name("balena.img.sig")).write_bytes(b"\x01" * 100)
    with pytest.raises(MalformedError):
        rawrsa.FORMAT.verify(image, trust=_trust(key))


def test_rsa_3072_and_library_functions(tmp_path: Path) -> None:
    big = rsa.generate_private_key(65537, 3072)
    digest = hashlib.sha256(b"x").digest()
    sig = rawrsa.sign_digest_raw(digest, FileSigner(big))
    assert len(sig) == 384
    assert rawrsa.verify_digest_raw(big.public_key(), sig, digest)
    assert not rawrsa.verify_digest_raw(big.public_key(), sig, hashlib.sha256(b"y").digest())
    # The same bytes cryptography's NoDigestInfo makes, which OpenSSL's recover reads as the bare digest.
    assert big.public_key().recover_data_from_signature(sig, padding.PKCS1v15(), utils.NoDigestInfo()) == digest
    with pytest.raises(UsageError):
        rawrsa.sign_digest_raw(b"short", FileSigner(big))


def test_non_rsa_keys_are_refused(files: dict[str, Path]) -> None:
    with pytest.raises(UsageError, match="RSA"):
        rawrsa.FORMAT.sign(files["image"], FileSigner(ec.generate_private_key(ec.SECP256R1())))


class _Delegate:
    """A signer that is not a FileSigner (a service or HSM key), optionally able to sign without DigestInfo."""

    def __init__(self, key: rsa.RSAPrivateKey, *, raw: bool, wrong: bool = False) -> None:
        self._key, self._raw, self._wrong = key, raw, wrong
        self._file = FileSigner(key)
        self.paddings: list[str] = []

    @property
    def key_id(self) -> str:
        return self._file.key_id

    def public_key(self) -> PublicKey:
        return self._file.public_key()

    def sign(self, message: bytes, *, hash_name: HashName | None = None, rsa_padding: RsaPadding = "pss") -> bytes:
        raise AssertionError("only digests go to a remote signer")

    def sign_digest(self, digest: bytes, *, hash_name: HashName, rsa_padding: RsaPadding = "pss") -> bytes:
        self.paddings.append(rsa_padding)
        if rsa_padding == rawrsa.RAW_PADDING:
            if not self._raw:  # a signer of before the padding existed
                raise UsageError(f"unsupported RSA padding {rsa_padding!r}")
            data = digest[::-1] if self._wrong else digest
            return self._key.sign(data, padding.PKCS1v15(), utils.NoDigestInfo())
        return self._file.sign_digest(digest, hash_name=hash_name, rsa_padding=rsa_padding)


def test_a_signer_offering_the_raw_padding_is_used_through_the_protocol(
    key: rsa.RSAPrivateKey, files: dict[str, Path]
) -> None:
    signer = _Delegate(key, raw=True)
    rawrsa.FORMAT.sign(files["image"], signer)
    assert signer.paddings == ["pkcs1v15-none"]
    assert rawrsa.FORMAT.verify(files["image"], trust=_trust(key)).verified


def test_a_signer_without_the_raw_padding_is_a_usage_error(key: rsa.RSAPrivateKey, files: dict[str, Path]) -> None:
    with pytest.raises(UsageError, match="without a DigestInfo"):
        rawrsa.FORMAT.sign(files["image"], _Delegate(key, raw=False))
    assert not files["image"].with_name("balena.img.sig").exists()


def test_a_signer_returning_a_wrong_signature_is_caught(key: rsa.RSAPrivateKey, files: dict[str, Path]) -> None:
    with pytest.raises(EnvironmentFailure):
        rawrsa.FORMAT.sign(files["image"], _Delegate(key, raw=True, wrong=True))


@settings(max_examples=200, deadline=2000, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sig=st.one_of(st.binary(min_size=256, max_size=256), st.binary(max_size=600)))
def test_hostile_signature_files(tmp_path: Path, key: rsa.RSAPrivateKey, sig: bytes) -> None:
    image = tmp_path / "img"
    image.write_bytes(b"data")
    (tmp_path / "img.sig").write_bytes(sig)
    try:
        result = rawrsa.FORMAT.verify(image, trust=_trust(key))
    except MalformedError:
        assert len(sig) not in rawrsa.RSA_SIZES
        return
    assert not result.verified
    rawrsa.FORMAT.detect(image)
