"""Kernel module signatures: sign-file's bytes, checked by modinfo, openssl cms and the kernel's own sign-file."""

from __future__ import annotations

import dataclasses
import glob
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from signery import formats
from signery.errors import MalformedError, Reason, SigneryError, UsageError
from signery.formats import kmod as fmt
from signery.keys import FileSigner
from signery.trust import TrustSet, load_trusted_key_file
from support import VECTORS, missing, require_tool

MODULE = VECTORS / "balena" / "signery_test.ko"  # gcc -c of signery_test.c: an ELF with a .modinfo section


def _sign_file() -> str:
    """The kernel's scripts/sign-file from Debian's linux-kbuild-* package."""
    found = sorted(glob.glob("/usr/lib/linux-kbuild-*/scripts/sign-file"))
    if not found:
        msg = "sign-file is not installed (linux-kbuild-6.1; scripts/test installs it)"
        missing(msg)
    return found[-1]


def _cert(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, cn: str) -> x509.Certificate:
    now = datetime.now(UTC)
    name = x509.Name(
        [x509.NameAttribute(NameOID.ORGANIZATION_NAME, "balena"), x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    )
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=30))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )


@pytest.fixture(scope="module")
def key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(65537, 2048)


@pytest.fixture(scope="module")
def other_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(65537, 2048)


@pytest.fixture()
def files(tmp_path: Path, key: rsa.RSAPrivateKey) -> dict[str, Path]:
    paths = {"key": tmp_path / "kmod.key", "cert": tmp_path / "kmod.crt", "ko": tmp_path / "pcan.ko"}
    paths["key"].write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    paths["cert"].write_bytes(_cert(key, "balenaOS kmod test").public_bytes(serialization.Encoding.PEM))
    shutil.copyfile(MODULE, paths["ko"])
    return paths


@pytest.fixture()
def trust(files: dict[str, Path]) -> TrustSet:
    return TrustSet([load_trusted_key_file(files["cert"]).key])


def _sign(files: dict[str, Path], key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, **kw) -> Path:
    opts = fmt.FORMAT.options(certificate=files["cert"], **kw.pop("opts", {}))
    return fmt.FORMAT.sign(files["ko"], FileSigner(key), options=opts, **kw)


def test_layout_and_roundtrip(files: dict[str, Path], key: rsa.RSAPrivateKey, trust: TrustSet) -> None:
    out = _sign(files, key)
    assert out == files["ko"].with_name("pcan.ko.signed")
    data, module = out.read_bytes(), MODULE.read_bytes()
    assert data.startswith(module) and data.endswith(b"~Module signature appended~\n")
    trailer = data[-40:-28]
    assert trailer[:8] == bytes([0, 0, 2, 0, 0, 0, 0, 0])
    assert int.from_bytes(trailer[8:], "big") == len(data) - len(module) - 40
    result = fmt.FORMAT.verify(out, trust=trust)
    assert result.verified, result.to_dict()
    claims = result.signatures[0].claims
    assert claims["signer"] == "balenaOS kmod test" and claims["hash"] == "sha512"
    assert result.signatures[0].key_name == "balenaOS kmod test"
    assert fmt.FORMAT.detect(out) and not fmt.FORMAT.detect(files["ko"])
    assert fmt.FORMAT.may_carry(out) and not fmt.FORMAT.may_carry(files["ko"])
    assert fmt.FORMAT.suits(files["ko"], FileSigner(key)) is False
    info = fmt.FORMAT.inspect(out)
    assert info["module_bytes"] == len(module) and info["signatures"][0]["claims"]["signer"] == "balenaOS kmod test"


def test_modinfo_and_openssl_accept_it(files: dict[str, Path], key: rsa.RSAPrivateKey, tmp_path: Path) -> None:
    modinfo = require_tool("modinfo")
    openssl = require_tool("openssl")
    out = _sign(files, key, output=tmp_path / "signed.ko")  # modinfo takes a path only when it ends in .ko
    shown = subprocess.run([modinfo, str(out)], capture_output=True, text=True, check=True).stdout
    fields = {
        line.split(":", 1)[0].strip(): line.split(":", 1)[1].strip() for line in shown.splitlines() if ":" in line
    }
    assert fields["sig_id"] == "PKCS#7"
    assert fields["signer"] == "balenaOS kmod test"
    assert fields["sig_hashalgo"] == "sha512"
    serial = x509.load_pem_x509_certificate(files["cert"].read_bytes()).serial_number
    assert fields["sig_key"].replace(":", "").lower().lstrip("0") == f"{serial:x}".lstrip("0")
    data = out.read_bytes()
    sig_len = int.from_bytes(data[-32:-28], "big")
    stripped, sig = tmp_path / "stripped.ko", tmp_path / "sig.der"
    stripped.write_bytes(data[: len(data) - 40 - sig_len])
    sig.write_bytes(data[len(data) - 40 - sig_len : -40])
    cmd = [openssl, "cms", "-verify", "-binary", "-inform", "DER", "-in", str(sig), "-content", str(stripped)]
    cmd += ["-certfile", str(files["cert"]), "-nointern", "-noverify", "-out", "/dev/null"]
    ok = subprocess.run(cmd, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    stripped.write_bytes(b"X" + stripped.read_bytes()[1:])
    assert subprocess.run(cmd, capture_output=True).returncode != 0


def test_byte_identical_to_sign_file(files: dict[str, Path], key: rsa.RSAPrivateKey, tmp_path: Path) -> None:
    sign_file = _sign_file()
    reference = tmp_path / "reference.ko"
    subprocess.run(
        [sign_file, "sha512", str(files["key"]), str(files["cert"]), str(files["ko"]), str(reference)],
        check=True,
        capture_output=True,
    )
    assert _sign(files, key).read_bytes() == reference.read_bytes()
    # sign-file's output verifies here too, and so does sha256
    trust = TrustSet([load_trusted_key_file(files["cert"]).key])
    assert fmt.verify(reference, trust=trust).verified
    subprocess.run(
        [sign_file, "sha256", str(files["key"]), str(files["cert"]), str(files["ko"]), str(reference)],
        check=True,
        capture_output=True,
    )
    mine = _sign(files, key, output=tmp_path / "mine256.ko", opts={"hash_algorithm": "sha256"})
    assert mine.read_bytes() == reference.read_bytes()


def test_reasons(files: dict[str, Path], key: rsa.RSAPrivateKey, other_key: rsa.RSAPrivateKey, trust: TrustSet) -> None:
    assert fmt.FORMAT.verify(files["ko"], trust=trust).reason is Reason.UNSIGNED
    out = _sign(files, key)
    tampered = bytearray(out.read_bytes())
    tampered[100] ^= 1
    bad = out.with_name("tampered.ko")
    bad.write_bytes(tampered)
    assert fmt.FORMAT.verify(bad, trust=trust).reason is Reason.TAMPERED
    assert fmt.FORMAT.verify(out, trust=TrustSet()).reason is Reason.UNKNOWN_KEY
    other = out.with_name("other.crt")
    other.write_bytes(_cert(other_key, "other").public_bytes(serialization.Encoding.PEM))
    wrong = TrustSet([load_trusted_key_file(other).key])
    result = fmt.FORMAT.verify(out, trust=wrong)
    assert result.reason is Reason.UNKNOWN_KEY and "balenaOS kmod test" in result.message
    sig = bytearray(out.read_bytes())
    sig[-41] ^= 1  # the last byte of the RSA signature
    bad.write_bytes(sig)
    assert fmt.FORMAT.verify(bad, trust=trust).reason is Reason.UNKNOWN_KEY  # no trusted key opens it
    revoked = TrustSet([dataclasses.replace(next(iter(trust)), revoked=True)])
    assert fmt.FORMAT.verify(out, trust=revoked).reason is Reason.REVOKED_KEY
    assert fmt.FORMAT.verify(out, trust=wrong.union(trust)).verified


def test_resigning_needs_replace(files: dict[str, Path], key: rsa.RSAPrivateKey, trust: TrustSet) -> None:
    out = _sign(files, key)
    shutil.copyfile(out, files["ko"])
    with pytest.raises(UsageError, match="already signed"):
        _sign(files, key, output=files["ko"].with_name("again.ko"))
    again = _sign(files, key, output=files["ko"].with_name("again.ko"), opts={"replace": True})
    assert again.read_bytes() == out.read_bytes()  # the old signature stripped, not nested
    with pytest.raises(UsageError, match="exists"):  # the generic sign never overwrites
        formats.sign(files["ko"], FileSigner(key), format="kmod", options={"certificate": files["cert"]})
    in_place = formats.sign(
        files["ko"],
        FileSigner(key),
        format="kmod",
        output=files["ko"],
        overwrite=True,
        options={"certificate": files["cert"], "replace": True},
    )[1]
    assert fmt.verify(in_place, trust=trust).verified


def test_signing_refusals(files: dict[str, Path], key: rsa.RSAPrivateKey, other_key: rsa.RSAPrivateKey) -> None:
    with pytest.raises(UsageError, match="certificate"):
        fmt.FORMAT.sign(files["ko"], FileSigner(key))
    with pytest.raises(UsageError, match="public key"):
        _sign(files, other_key)
    with pytest.raises(UsageError, match="hash"):
        fmt.FORMAT.options(hash_algorithm="md5")
    with pytest.raises(UsageError, match="does not exist"):
        fmt.sign(files["ko"].with_name("missing.ko"), FileSigner(key), certificate=files["cert"])


def test_ecdsa(files: dict[str, Path], tmp_path: Path) -> None:
    eckey = ec.generate_private_key(ec.SECP384R1())
    files["cert"].write_bytes(_cert(eckey, "ec kmod").public_bytes(serialization.Encoding.PEM))
    out = _sign(files, eckey, opts={"hash_algorithm": "sha384"})
    trust = TrustSet([load_trusted_key_file(files["cert"]).key])
    assert fmt.verify(out, trust=trust).verified
    data = bytearray(out.read_bytes())
    data[10] ^= 1
    out.write_bytes(data)
    assert fmt.verify(out, trust=trust).reason is Reason.UNKNOWN_KEY  # ECDSA cannot tell tampering from a stranger


@pytest.mark.parametrize(
    ("trailer", "match"),
    [
        (bytes([0, 0, 1, 0, 0, 0, 0, 0]) + (10).to_bytes(4, "big"), "id_type"),
        (bytes([1, 0, 2, 0, 0, 0, 0, 0]) + (10).to_bytes(4, "big"), "zero"),
        (bytes([0, 0, 2, 0, 0, 0, 0, 0]) + (1 << 30).to_bytes(4, "big"), "length"),
        (bytes([0, 0, 2, 0, 0, 0, 0, 0]) + (0).to_bytes(4, "big"), "length"),
    ],
)
def test_damaged_trailers_are_malformed(tmp_path: Path, trailer: bytes, match: str) -> None:
    path = tmp_path / "m.ko"
    path.write_bytes(MODULE.read_bytes() + trailer + fmt.MAGIC)
    with pytest.raises(MalformedError, match=match):
        fmt.verify(path, trust=TrustSet())
    path.write_bytes(fmt.MAGIC[3:])
    assert fmt.verify(path, trust=TrustSet()).reason is Reason.UNSIGNED
    path.write_bytes(b"x" + fmt.MAGIC)
    with pytest.raises(MalformedError):
        fmt.verify(path, trust=TrustSet())


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_mutated_and_truncated_modules_never_crash(
    data: st.DataObject, files: dict[str, Path], key: rsa.RSAPrivateKey, trust: TrustSet, tmp_path: Path
) -> None:
    out = fmt.default_output(files["ko"])
    signed = out.read_bytes() if out.exists() else _sign(files, key).read_bytes()
    buf = bytearray(signed)
    sig_start = len(MODULE.read_bytes())
    how = data.draw(st.sampled_from(["flip", "truncate", "garbage"]))
    if how == "flip":
        for _ in range(data.draw(st.integers(1, 6))):
            buf[data.draw(st.integers(sig_start, len(buf) - 1))] = data.draw(st.integers(0, 255))
    elif how == "truncate":
        buf = buf[data.draw(st.integers(1, len(buf) - 1)) :]
    else:
        body = data.draw(st.binary(max_size=400))
        buf = bytearray(body + len(body).to_bytes(4, "big")[:0] + bytes([0, 0, 2, 0, 0, 0, 0, 0]))
        buf += min(len(body), data.draw(st.integers(0, 500))).to_bytes(4, "big") + fmt.MAGIC
    path = tmp_path / "fuzz.ko"
    path.write_bytes(bytes(buf))
    try:
        result = fmt.verify(path, trust=trust)
        fmt.inspect(path)
    except SigneryError as exc:
        assert exc.reason is Reason.MALFORMED
        return
    if result.verified:  # the signer's issuer and serial are not signed (CMS never signs them): only the module is
        assert bytes(buf[:sig_start]) == MODULE.read_bytes()
