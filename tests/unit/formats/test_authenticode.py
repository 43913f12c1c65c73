"""Authenticode: signing real EFI images, checked by sbverify and osslsigncode, byte-compared with sbsign."""

from __future__ import annotations

import dataclasses
import shutil
import struct
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from signery import formats
from signery.errors import MalformedError, Reason, SigneryError, UnsafeArchiveError, UsageError
from signery.formats import _cms, _pe
from signery.formats import authenticode as fmt
from signery.keys import FileSigner
from signery.trust import TrustSet, load_trusted_key_file
from support import VECTORS, require_tool

EFI = VECTORS / "balena" / "SetNull.efi"  # 3825 bytes: not 8-aligned, so signing pads it
EFI_TRAILING = VECTORS / "balena" / "HelloWorld.efi"  # data after its last section


def _cert(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, cn: str, issuer_key=None, issuer=None, ca=False):
    now = datetime.now(UTC)
    subject = x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, cn), x509.NameAttribute(NameOID.ORGANIZATION_NAME, "balenaOS")]
    )
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.subject if issuer is not None else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if not ca:
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False)
    return builder.sign(issuer_key or key, hashes.SHA256())


@pytest.fixture(scope="module")
def key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(65537, 2048)


@pytest.fixture(scope="module")
def other_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(65537, 2048)


@pytest.fixture()
def files(tmp_path: Path, key: rsa.RSAPrivateKey) -> dict[str, Path]:
    cert = _cert(key, "signery efi test")
    paths = {"key": tmp_path / "db.key", "cert": tmp_path / "db.crt", "efi": tmp_path / "SetNull.efi"}
    paths["key"].write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    paths["key"].chmod(0o600)
    paths["cert"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    shutil.copyfile(EFI, paths["efi"])
    return paths


@pytest.fixture()
def trust(files: dict[str, Path]) -> TrustSet:
    return TrustSet([load_trusted_key_file(files["cert"]).key])


def _sign(files: dict[str, Path], key: rsa.RSAPrivateKey, **kw) -> Path:
    return fmt.FORMAT.sign(
        files["efi"], FileSigner(key), options=fmt.FORMAT.options(certificate=files["cert"], **kw.pop("opts", {})), **kw
    )


def _flip_in_section(path: Path) -> Path:
    data = bytearray(path.read_bytes())
    img = _pe.parse(data, source=str(path))
    text = img.sections[0]
    data[text.offset + 17] ^= 0x40
    out = path.with_name("tampered.efi")
    out.write_bytes(data)
    return out


def test_signs_as_sbsign_lays_out_and_verifies(files: dict[str, Path], key: rsa.RSAPrivateKey, trust: TrustSet) -> None:
    out = _sign(files, key)
    assert out == files["efi"].with_name("SetNull.efi.signed")
    data = out.read_bytes()
    img = _pe.parse(data, source="out")
    assert img.cert_offset == 3832 and img.cert_offset % 8 == 0 and img.cert_size % 8 == 0  # padded from 3825
    assert len(data) == img.cert_offset + img.cert_size
    (entry,) = _pe.certificates(data, img, source="out")
    assert (entry.revision, entry.type) == (0x0200, 0x0002)
    assert img.checksum == _pe.pe_checksum(data, img.checksum_offset) != 0
    sd = _cms.parse_content_info(entry.content, what="entry")
    assert sd.content_type == fmt.OID_SPC_INDIRECT_DATA and len(sd.certificates) == 1
    assert set(sd.signers[0].attributes) == {
        _cms.OID_CONTENT_TYPE,
        _cms.OID_SIGNING_TIME,
        _cms.OID_MESSAGE_DIGEST,
        _cms.SMIME_CAPABILITIES[0],
    }
    result = fmt.FORMAT.verify(out, trust=trust)
    assert result.verified, result.to_dict()
    check = result.signatures[0]
    assert check.claims["subject"] == "O=balenaOS,CN=signery efi test"
    assert check.key_id == FileSigner(key).key_id
    assert fmt.FORMAT.detect(out) and fmt.FORMAT.may_carry(out)
    assert not fmt.FORMAT.detect(files["efi"]) and fmt.FORMAT.may_carry(files["efi"])
    assert fmt.FORMAT.suits(files["efi"], FileSigner(key)) is False
    info = fmt.FORMAT.inspect(out)
    assert info["signatures"][0]["claims"]["subject"] == "O=balenaOS,CN=signery efi test"


def test_real_tools_accept_and_refuse_tampering(
    files: dict[str, Path], key: rsa.RSAPrivateKey, trust: TrustSet
) -> None:
    sbverify = require_tool("sbverify")
    osslsigncode = require_tool("osslsigncode")
    out = _sign(files, key)
    ok = subprocess.run([sbverify, "--cert", str(files["cert"]), str(out)], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert "Signature verification OK" in ok.stdout
    ok = subprocess.run(
        [osslsigncode, "verify", "-CAfile", str(files["cert"]), "-in", str(out)], capture_output=True, text=True
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr
    bad = _flip_in_section(out)
    assert subprocess.run([sbverify, "--cert", str(files["cert"]), str(bad)], capture_output=True).returncode != 0
    assert (
        subprocess.run(
            [osslsigncode, "verify", "-CAfile", str(files["cert"]), "-in", str(bad)], capture_output=True
        ).returncode
        != 0
    )
    assert fmt.FORMAT.verify(bad, trust=trust).reason is Reason.TAMPERED


@pytest.mark.parametrize("vector", [EFI, EFI_TRAILING], ids=["padded", "trailing-data"])
def test_byte_identical_to_sbsign(vector: Path, files: dict[str, Path], key: rsa.RSAPrivateKey) -> None:
    sbsign = require_tool("sbsign")
    shutil.copyfile(vector, files["efi"])
    reference = files["efi"].with_name("reference.signed")
    subprocess.run(
        [
            sbsign,
            "--key",
            str(files["key"]),
            "--cert",
            str(files["cert"]),
            "--output",
            str(reference),
            str(files["efi"]),
        ],
        check=True,
        capture_output=True,
    )
    ref = reference.read_bytes()
    ref_img = _pe.parse(ref, source="sbsign")
    ref_sd = _cms.parse_content_info(_pe.certificates(ref, ref_img, source="sbsign")[0].content, what="sbsign")
    when = _cms.signing_time_of(ref_sd.signers[0])
    assert when is not None
    out = _sign(files, key, now=when)
    mine = out.read_bytes()
    mine_img = _pe.parse(mine, source="mine")
    mine_sd = _cms.parse_content_info(_pe.certificates(mine, mine_img, source="mine")[0].content, what="mine")
    assert _pe.image_hash(mine, mine_img, "sha256") == _pe.image_hash(ref, ref_img, "sha256")
    assert mine_sd.content is not None and ref_sd.content is not None
    assert mine_sd.content.der == ref_sd.content.der  # the SpcIndirectDataContent
    assert mine == ref  # with the same signing time, every byte (RSA PKCS#1 v1.5 is deterministic)


def test_verifies_sbsign_output_and_a_second_signature(
    files: dict[str, Path], key: rsa.RSAPrivateKey, other_key: rsa.RSAPrivateKey, trust: TrustSet
) -> None:
    sbsign = require_tool("sbsign")
    reference = files["efi"].with_name("reference.signed")
    subprocess.run(
        [
            sbsign,
            "--key",
            str(files["key"]),
            "--cert",
            str(files["cert"]),
            "--output",
            str(reference),
            str(files["efi"]),
        ],
        check=True,
        capture_output=True,
    )
    assert fmt.FORMAT.verify(reference, trust=trust).verified
    # A second signer appends a second WIN_CERTIFICATE, as sbsign does on a signed image.
    other_cert = files["efi"].with_name("other.crt")
    other_cert.write_bytes(_cert(other_key, "other signer").public_bytes(serialization.Encoding.PEM))
    twice = fmt.FORMAT.sign(
        reference, FileSigner(other_key), options=fmt.FORMAT.options(certificate=other_cert.read_bytes())
    )
    data = twice.read_bytes()
    assert len(_pe.certificates(data, _pe.parse(data, source="x"), source="x")) == 2
    result = fmt.FORMAT.verify(twice, trust=trust)
    assert result.verified and [s.status for s in result.signatures] == ["valid", "unknown-key"]
    both = trust.union(TrustSet([load_trusted_key_file(other_cert).key]))
    assert fmt.FORMAT.verify(twice, trust=both, threshold=2).verified
    sbverify = require_tool("sbverify")
    listed = subprocess.run([sbverify, "--list", str(twice)], capture_output=True, text=True)
    assert "signature 2" in listed.stdout


def test_reasons(files: dict[str, Path], key: rsa.RSAPrivateKey, other_key: rsa.RSAPrivateKey, trust: TrustSet) -> None:
    assert fmt.FORMAT.verify(files["efi"], trust=trust).reason is Reason.UNSIGNED
    out = _sign(files, key)
    assert fmt.FORMAT.verify(out, trust=TrustSet()).reason is Reason.UNKNOWN_KEY
    other = files["efi"].with_name("other.crt")
    other.write_bytes(_cert(other_key, "other").public_bytes(serialization.Encoding.PEM))
    assert fmt.FORMAT.verify(out, trust=TrustSet([load_trusted_key_file(other).key])).reason is Reason.UNKNOWN_KEY
    # The signature value itself damaged: the image hash still matches, the signature does not.
    data = bytearray(out.read_bytes())
    data[-40] ^= 1  # inside the RSA signature, the last field of the SignedData (before padding)
    bad = out.with_name("badsig.efi")
    bad.write_bytes(data)
    assert fmt.FORMAT.verify(bad, trust=trust).reason is Reason.BAD_SIGNATURE
    revoked = TrustSet([dataclasses.replace(next(iter(trust)), revoked=True)])
    assert fmt.FORMAT.verify(out, trust=revoked).reason is Reason.REVOKED_KEY


def test_trusted_issuer_vouches_for_an_embedded_leaf(tmp_path: Path, key: rsa.RSAPrivateKey) -> None:
    ca_key = rsa.generate_private_key(65537, 2048)
    ca = _cert(ca_key, "balenaOS db CA", ca=True)
    leaf = _cert(key, "leaf", issuer_key=ca_key, issuer=ca)
    efi = tmp_path / "a.efi"
    shutil.copyfile(EFI, efi)
    out = fmt.sign(efi, FileSigner(key), certificate=leaf.public_bytes(serialization.Encoding.DER))
    ca_pem = tmp_path / "ca.crt"
    ca_pem.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    result = fmt.verify(out, trust=TrustSet([load_trusted_key_file(ca_pem).key]))
    assert result.verified, result.to_dict()  # the trusted CA key signed the embedded leaf, as sbverify --cert CA
    assert result.signatures[0].claims["trusted_issuer"] == "balenaOS db CA"
    sbverify = require_tool("sbverify")
    assert subprocess.run([sbverify, "--cert", str(ca_pem), str(out)], capture_output=True).returncode == 0
    stranger = _cert(rsa.generate_private_key(65537, 2048), "stranger", ca=True)
    ca_pem.write_bytes(stranger.public_bytes(serialization.Encoding.PEM))
    assert fmt.verify(out, trust=TrustSet([load_trusted_key_file(ca_pem).key])).reason is Reason.UNKNOWN_KEY


def test_signing_refusals(files: dict[str, Path], key: rsa.RSAPrivateKey, other_key: rsa.RSAPrivateKey) -> None:
    with pytest.raises(UsageError, match="certificate"):
        fmt.FORMAT.sign(files["efi"], FileSigner(key))
    with pytest.raises(UsageError, match="public key"):
        _sign(files, other_key)
    with pytest.raises(UsageError, match="hash"):
        fmt.FORMAT.options(hash_algorithm="sha1")
    with pytest.raises(UsageError, match="does not apply"):
        fmt.FORMAT.options(replace=True)
    _sign(files, key)
    with pytest.raises(UsageError, match="exists"):  # the generic sign never overwrites X.signed
        formats.sign(files["efi"], FileSigner(key), format="authenticode", options={"certificate": files["cert"]})
    not_pe = files["efi"].with_name("x.efi")
    not_pe.write_bytes(b"MZ" + b"\0" * 100)
    with pytest.raises(MalformedError, match="offset"):
        _sign({**files, "efi": not_pe}, key)


def test_sha384_and_ecdsa(tmp_path: Path) -> None:
    eckey = ec.generate_private_key(ec.SECP384R1())
    cert = _cert(eckey, "ec signer")
    pem = tmp_path / "ec.crt"
    pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    efi = tmp_path / "a.efi"
    shutil.copyfile(EFI_TRAILING, efi)
    out = fmt.sign(efi, FileSigner(eckey), certificate=pem, hash_algorithm="sha384")
    result = fmt.verify(out, trust=TrustSet([load_trusted_key_file(pem).key]))
    assert result.verified and result.signatures[0].claims["hash"] == "sha384"
    assert fmt.verify(_flip_in_section(out), trust=TrustSet([load_trusted_key_file(pem).key])).reason is Reason.TAMPERED


def test_hostile_layouts_are_refused_with_an_offset(files: dict[str, Path], key: rsa.RSAPrivateKey) -> None:
    out = _sign(files, key)
    data = out.read_bytes()
    img = _pe.parse(data, source="x")
    with pytest.raises(UnsafeArchiveError, match="offset"):  # bytes after the certificate table
        _pe.parse(data + b"evil", source="x")
    shifted = bytearray(data)
    struct.pack_into("<I", shifted, img.security_entry + 4, img.cert_size - 8)
    with pytest.raises(UnsafeArchiveError, match="offset"):
        _pe.parse(shifted, source="x")
    overlap = bytearray(EFI.read_bytes())
    base = _pe.parse(overlap, source="x")
    table = base.security_entry + 8 * 12  # section table follows the 16 data directories
    struct.pack_into("<I", overlap, table + 40 + 20, base.sections[0].offset + 8)  # .reloc starts inside .text
    with pytest.raises(UnsafeArchiveError, match="overlap"):
        _pe.parse(overlap, source="x")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_mutated_and_truncated_images_never_crash(
    data: st.DataObject, files: dict[str, Path], key: rsa.RSAPrivateKey, trust: TrustSet, tmp_path: Path
) -> None:
    signed = _signed_cache(files, key)
    buf = bytearray(signed)
    how = data.draw(st.sampled_from(["flip", "truncate", "garbage"]))
    if how == "flip":
        for _ in range(data.draw(st.integers(1, 8))):
            buf[data.draw(st.integers(0, len(buf) - 1))] = data.draw(st.integers(0, 255))
    elif how == "truncate":
        buf = buf[: data.draw(st.integers(0, len(buf) - 1))]
    else:
        buf = bytearray(b"MZ" + data.draw(st.binary(max_size=600)))
    path = tmp_path / "fuzz.efi"
    path.write_bytes(bytes(buf))
    try:
        result = fmt.verify(path, trust=trust)
        fmt.inspect(path)
    except SigneryError as exc:
        assert exc.reason in (Reason.MALFORMED, Reason.UNSAFE_ARCHIVE)
        return
    if result.verified:  # a flip may land in the checksum, padding or the unsigned parts of the SignedData
        img, original = _pe.parse(buf, source="fuzz"), _pe.parse(signed, source="signed")
        assert _pe.image_hash(buf, img, "sha256") == _pe.image_hash(signed, original, "sha256")


def _signed_cache(files: dict[str, Path], key: rsa.RSAPrivateKey) -> bytes:
    """The signed vector, signed once per test (hypothesis runs every example with the same fixtures)."""
    out = fmt.default_output(files["efi"])
    return out.read_bytes() if out.exists() else _sign(files, key).read_bytes()
