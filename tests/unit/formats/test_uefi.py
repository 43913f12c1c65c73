"""UEFI ESLs and .auth updates: byte-identical to efitools, checked by OpenSSL, refused when presented as another
variable, and robust against hostile files."""

from __future__ import annotations

import contextlib
import hashlib
import subprocess
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from signery.errors import MalformedError, Reason, SigneryError, UsageError, VerificationError
from signery.formats import _cms, get_format, uefi
from signery.keys import FileSigner, HashName, PublicKey, RsaPadding, private_key_pem
from signery.trust import Constraints, TrustSet, trusted_key_from_public
from support import require_tool

OWNER = "11111111-2222-3333-4444-555555555555"
WHEN = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
WHEN_TEXT = "2026-01-02 03:04:05"  # sign-efi-sig-list -t takes "%Y-%m-%d %H:%M:%S"
VECTORS = Path(__file__).resolve().parents[2] / "vectors" / "balena"


@dataclass(frozen=True)
class Pki:
    key: rsa.RSAPrivateKey
    cert: x509.Certificate
    key_path: Path
    cert_path: Path

    @property
    def signer(self) -> FileSigner:
        return FileSigner(self.key)

    @property
    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)


def _pki(directory: Path, name: str) -> Pki:
    key = rsa.generate_private_key(65537, 2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"signery test {name}")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(datetime(2025, 1, 1, tzinfo=UTC))
        .not_valid_after(datetime(2036, 1, 1, tzinfo=UTC))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_path, cert_path = directory / f"{name}.key", directory / f"{name}.crt"
    key_path.write_bytes(private_key_pem(key))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return Pki(key, cert, key_path, cert_path)


@pytest.fixture(scope="module")
def pki_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("uefi-pki")


@pytest.fixture(scope="module")
def pk(pki_dir: Path) -> Pki:
    return _pki(pki_dir, "PK")


@pytest.fixture(scope="module")
def kek(pki_dir: Path) -> Pki:
    return _pki(pki_dir, "KEK")


@pytest.fixture(scope="module")
def dbcert(pki_dir: Path) -> Pki:
    return _pki(pki_dir, "db")


def _run(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, check=False, cwd=cwd, timeout=60)


def _ok(*args: str | Path) -> str:
    proc = _run(*args)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def _trust(*pkis: Pki, **constraints: tuple[str, ...]) -> TrustSet:
    return TrustSet(
        trusted_key_from_public(p.key.public_key(), name=p.cert_path.stem, constraints=Constraints(**constraints))
        for p in pkis
    )


# -- signature lists -----------------------------------------------------------------------------------------------


def test_esl_from_certificates_is_what_cert_to_efi_sig_list_writes(tmp_path: Path, dbcert: Pki, kek: Pki) -> None:
    tool = require_tool("cert-to-efi-sig-list")
    ref = tmp_path / "ref.esl"
    _ok(tool, "-g", OWNER, dbcert.cert_path, ref)
    assert uefi.esl_from_certificates([dbcert.pem], OWNER) == ref.read_bytes()
    # DER, a loaded certificate and a uuid.UUID owner make the same bytes; two certificates make two lists.
    der = dbcert.cert.public_bytes(serialization.Encoding.DER)
    assert uefi.esl_from_certificates([der], uuid.UUID(OWNER)) == ref.read_bytes()
    both = uefi.esl_from_certificates([dbcert.cert, kek.cert], OWNER)
    lists = uefi.parse_esl(both)
    assert [lst.kind for lst in lists] == ["x509", "x509"]
    assert [e.owner for lst in lists for e in lst.entries] == [uuid.UUID(OWNER)] * 2
    assert uefi.esl_certificates(both) == [dbcert.cert, kek.cert]


def test_sig_list_to_certs_reads_the_certificates_back(tmp_path: Path, dbcert: Pki, kek: Pki) -> None:
    tool = require_tool("sig-list-to-certs")
    esl = tmp_path / "two.esl"
    esl.write_bytes(uefi.esl_from_certificates([dbcert.pem, kek.pem], OWNER))
    _ok(tool, esl, tmp_path / "out")
    got = sorted(tmp_path.glob("out-*.der"))
    assert [p.read_bytes() for p in got] == [c.cert.public_bytes(serialization.Encoding.DER) for c in (dbcert, kek)]


def test_esl_from_hashes_is_one_sha256_list_of_48_byte_entries() -> None:
    digests = [hashlib.sha256(b"image %d" % i).digest() for i in range(3)]
    esl = uefi.esl_from_hashes([digests[0], digests[1].hex(), digests[2]], OWNER)
    # EFI_SIGNATURE_LIST header: type GUID (mixed endian), ListSize, HeaderSize 0, SignatureSize 48.
    assert esl[:16] == bytes.fromhex("2616c4c14c509240aca941f936934328")
    assert esl[16:28] == (28 + 3 * 48).to_bytes(4, "little") + bytes(4) + (48).to_bytes(4, "little")
    assert len(esl) == 28 + 3 * 48
    (lst,) = uefi.parse_esl(esl)
    assert lst.kind == "sha256"
    assert [e.data for e in lst.entries] == digests
    assert all(e.owner == uuid.UUID(OWNER) for e in lst.entries)


def test_esl_from_hashes_matches_hash_to_efi_sig_list_layout(tmp_path: Path) -> None:
    """hash-to-efi-sig-list of a real EFI image (efitools' own HelloWorld.efi): the same bytes, owner GUID aside."""
    tool = require_tool("hash-to-efi-sig-list")
    image = tmp_path / "a.efi"
    image.write_bytes((VECTORS / "HelloWorld.efi").read_bytes())
    out = tmp_path / "a.esl"
    proc = _run(tool, image, out)
    assert proc.returncode == 0 and out.stat().st_size == 28 + 48, proc
    ref = out.read_bytes()
    (lst,) = uefi.parse_esl(ref)
    ours = uefi.esl_from_hashes([lst.entries[0].data], lst.entries[0].owner)
    assert ours == ref


@pytest.mark.parametrize(
    "bad",
    [
        b"\x00" * 27,  # truncated header
        bytes(16) + (10).to_bytes(4, "little") + bytes(8),  # ListSize smaller than the header
        bytes(16) + (28 + 48).to_bytes(4, "little") + bytes(4) + (48).to_bytes(4, "little"),  # runs past the end
        bytes.fromhex("2616c4c14c509240aca941f936934328")
        + (28 + 40).to_bytes(4, "little")
        + bytes(4)
        + (40).to_bytes(4, "little")
        + bytes(40),  # a SHA-256 list with 40-byte entries
        bytes(16) + (28 + 17).to_bytes(4, "little") + bytes(4) + (16).to_bytes(4, "little") + bytes(17),  # size 16
        bytes(16) + (28 + 33).to_bytes(4, "little") + bytes(4) + (32).to_bytes(4, "little") + bytes(33),  # remainder
    ],
)
def test_parse_esl_refuses_inconsistent_lists(bad: bytes) -> None:
    with pytest.raises(MalformedError):
        uefi.parse_esl(bad)


def test_library_inputs_are_checked() -> None:
    with pytest.raises(UsageError):
        uefi.esl_from_hashes([b"short"], OWNER)
    with pytest.raises(UsageError):
        uefi.esl_from_hashes(["zz" * 32], OWNER)
    with pytest.raises(UsageError):
        uefi.esl_from_hashes([], OWNER)
    with pytest.raises(UsageError):
        uefi.esl_from_hashes([bytes(32)], "not-a-guid")
    with pytest.raises(MalformedError):
        uefi.esl_from_certificates([b"not a certificate"], OWNER)
    with pytest.raises(UsageError):
        uefi.signed_bytes("Db", uefi.ATTRIBUTES, uefi.ZERO_TIME, b"")


# -- .auth against sign-efi-sig-list ---------------------------------------------------------------------------------


def _efitools_auth(tmp_path: Path, signer: Pki, variable: str, esl: bytes, *, append: bool, t: str | None) -> bytes:
    tool = require_tool("sign-efi-sig-list")
    src, out = tmp_path / f"{variable}-in.esl", tmp_path / f"{variable}-ref.auth"
    src.write_bytes(esl)
    args: list[str | Path] = [tool]
    if append:
        args.append("-a")
    if t is not None:
        args += ["-t", t]
    _ok(*args, "-c", signer.cert_path, "-k", signer.key_path, variable, src, out)
    return out.read_bytes()


def _signers_for(variable: str, pk: Pki, kek: Pki) -> Pki:
    return pk if variable in ("PK", "KEK") else kek  # balena's chain: PK signs PK and KEK, KEK signs db and dbx


@pytest.mark.parametrize("append", [False, True])
@pytest.mark.parametrize("variable", ["PK", "KEK", "db", "dbx"])
def test_auth_is_byte_identical_to_sign_efi_sig_list(
    tmp_path: Path, pk: Pki, kek: Pki, dbcert: Pki, variable: str, append: bool
) -> None:
    if variable == "PK":
        esl = uefi.esl_from_certificates([pk.pem], OWNER)
    elif variable == "KEK":
        esl = uefi.esl_from_certificates([kek.pem], OWNER)
    elif variable == "db":
        esl = uefi.esl_from_certificates([dbcert.pem], OWNER) + uefi.esl_from_hashes([bytes(range(32))], OWNER)
    else:
        esl = uefi.esl_from_hashes([hashlib.sha256(b"revoked").digest()], OWNER)
    signer = _signers_for(variable, pk, kek)
    ref = _efitools_auth(tmp_path, signer, variable, esl, append=append, t=WHEN_TEXT)
    ours = uefi.make_auth(variable, esl, signer.signer, signer.pem, append=append, timestamp=WHEN)
    assert ours == ref
    parsed = uefi.parse_auth(ours)
    assert parsed.esl == esl
    assert parsed.timestamp == uefi.EfiTime(2026, 1, 2, 3, 4, 5)
    check = uefi.check_auth(ref, variable, trusted=[signer.cert])
    assert (check.variable, check.append, check.key_id) == (variable, append, signer.signer.key_id)


def test_append_without_a_time_is_zero_time_like_efitools(tmp_path: Path, kek: Pki, dbcert: Pki) -> None:
    esl = uefi.esl_from_certificates([dbcert.pem], OWNER)
    ref = _efitools_auth(tmp_path, kek, "db", esl, append=True, t=None)
    assert ref[:16] == bytes(16)
    assert uefi.make_auth("db", esl, kek.signer, kek.cert, append=True) == ref


def test_replacement_without_a_time_is_now(kek: Pki, dbcert: Pki) -> None:
    esl = uefi.esl_from_certificates([dbcert.pem], OWNER)
    before = datetime.now(UTC).replace(microsecond=0)
    auth = uefi.parse_auth(uefi.make_auth("db", esl, kek.signer, kek.cert))
    stamped = auth.timestamp.to_datetime()
    assert stamped is not None and before <= stamped <= datetime.now(UTC)


def test_signed_bytes_are_what_sign_efi_sig_list_o_outputs(tmp_path: Path, kek: Pki, dbcert: Pki) -> None:
    tool = require_tool("sign-efi-sig-list")
    esl = uefi.esl_from_certificates([dbcert.pem], OWNER)
    src = tmp_path / "db.esl"
    src.write_bytes(esl)
    for variable in ("db", "dbx", "KEK", "PK"):
        for append, attrs in ((False, uefi.ATTRIBUTES), (True, uefi.APPEND_ATTRIBUTES)):
            out = tmp_path / f"{variable}{append}.forsig"
            _ok(tool, *(["-a"] if append else []), "-t", WHEN_TEXT, "-o", variable, src, out)
            assert uefi.signed_bytes(variable, attrs, uefi.EfiTime.from_datetime(WHEN), esl) == out.read_bytes()


def test_the_pkcs7_verifies_with_openssl_over_the_rebuilt_signed_bytes(tmp_path: Path, kek: Pki, dbcert: Pki) -> None:
    openssl = require_tool("openssl")
    esl = uefi.esl_from_hashes([hashlib.sha256(b"bootx64.efi").digest()], OWNER)
    auth = uefi.parse_auth(uefi.make_auth("db", esl, kek.signer, kek.cert, append=True, timestamp=WHEN))
    # The .auth holds a bare SignedData; OpenSSL reads a ContentInfo, so wrap it.
    p7 = tmp_path / "p7.der"
    p7.write_bytes(_cms.content_info(auth.pkcs7))
    content = tmp_path / "signable.bin"
    content.write_bytes(uefi.signed_bytes("db", uefi.APPEND_ATTRIBUTES, auth.timestamp, esl))
    common = ["-binary", "-inform", "DER", "-in", p7, "-content", content, "-CAfile", kek.cert_path, "-purpose", "any"]
    for mode in ("cms", "smime"):
        proc = _run(openssl, mode, "-verify", *common, "-out", "/dev/null")
        assert proc.returncode == 0, proc.stderr
        assert "Verification successful" in proc.stderr
    # As dbx (other name) or as a replacement (other attributes) the same SignedData fails.
    content.write_bytes(uefi.signed_bytes("dbx", uefi.APPEND_ATTRIBUTES, auth.timestamp, esl))
    assert _run(openssl, "cms", "-verify", *common, "-out", "/dev/null").returncode != 0
    content.write_bytes(uefi.signed_bytes("db", uefi.ATTRIBUTES, auth.timestamp, esl))
    assert _run(openssl, "cms", "-verify", *common, "-out", "/dev/null").returncode != 0


# -- verification verdicts ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def db_auth(kek: Pki, dbcert: Pki) -> bytes:
    esl = uefi.esl_from_hashes([hashlib.sha256(b"bootx64.efi").digest()], OWNER)
    return uefi.make_auth("db", esl, kek.signer, kek.cert, append=True, timestamp=WHEN)


@pytest.mark.parametrize("other", ["dbx", "KEK", "PK"])
def test_db_auth_presented_as_another_variable_is_a_policy_violation(db_auth: bytes, kek: Pki, other: str) -> None:
    with pytest.raises(VerificationError) as err:
        uefi.check_auth(db_auth, other, trusted=[kek.cert])
    assert err.value.reason is Reason.POLICY_VIOLATION
    assert "update of db" in err.value.message


def test_efitools_db_auth_checked_as_dbx_is_refused(tmp_path: Path, kek: Pki, dbcert: Pki) -> None:
    esl = uefi.esl_from_certificates([dbcert.pem], OWNER)
    ref = _efitools_auth(tmp_path, kek, "db", esl, append=False, t=WHEN_TEXT)
    assert uefi.check_auth(ref, "db", trusted=[kek.pem]).variable == "db"
    with pytest.raises(VerificationError) as err:
        uefi.check_auth(ref, "dbx", trusted=[kek.pem])
    assert err.value.reason is Reason.POLICY_VIOLATION


def test_verdicts_for_changed_untrusted_and_wrong_kind(db_auth: bytes, kek: Pki, pk: Pki) -> None:
    changed = db_auth[:-1] + bytes([db_auth[-1] ^ 1])
    with pytest.raises(VerificationError) as err:
        uefi.check_auth(changed, "db", trusted=[kek.cert])
    assert err.value.reason is Reason.TAMPERED
    retimed = bytes([db_auth[0] ^ 1]) + db_auth[1:]
    with pytest.raises(VerificationError) as err:
        uefi.check_auth(retimed, "db", trusted=[kek.cert])
    assert err.value.reason is Reason.TAMPERED
    with pytest.raises(VerificationError) as err:
        uefi.check_auth(db_auth, "db", trusted=[pk.cert])
    assert err.value.reason is Reason.UNKNOWN_KEY
    assert uefi.check_auth(db_auth, "db", trusted=[kek.key.public_key()], append=True).append is True
    with pytest.raises(VerificationError) as err:
        uefi.check_auth(db_auth, "db", trusted=[kek.cert], append=False)
    assert err.value.reason is Reason.POLICY_VIOLATION
    # The signature value itself damaged: the embedded signer's key no longer verifies it.
    p7_at = uefi.AUTH_HEADER_SIZE
    auth = uefi.parse_auth(db_auth)
    sig_at = p7_at + len(auth.pkcs7) - 10
    broken = db_auth[:sig_at] + bytes([db_auth[sig_at] ^ 0xFF]) + db_auth[sig_at + 1 :]
    with pytest.raises(VerificationError) as err:
        uefi.check_auth(broken, "db", trusted=[kek.cert])
    assert err.value.reason is Reason.BAD_SIGNATURE


def test_a_content_info_wrapped_pkcs7_is_read_too(db_auth: bytes, kek: Pki) -> None:
    auth = uefi.parse_auth(db_auth)
    wrapped = _cms.content_info(auth.pkcs7)
    header = db_auth[:16] + (24 + len(wrapped)).to_bytes(4, "little") + db_auth[20:40]
    assert uefi.check_auth(header + wrapped + auth.esl, "db", trusted=[kek.cert]).variable == "db"


class _RemoteLike:
    """A signer that only signs digests (what a signing service or an HSM offers); it records every call."""

    def __init__(self, inner: FileSigner) -> None:
        self._inner = inner
        self.calls: list[tuple[str, int]] = []

    @property
    def key_id(self) -> str:
        return self._inner.key_id

    def public_key(self) -> PublicKey:
        return self._inner.public_key()

    def sign(self, message: bytes, *, hash_name: HashName | None = None, rsa_padding: RsaPadding = "pss") -> bytes:
        raise AssertionError("a format must not send the whole message to a remote signer")

    def sign_digest(self, digest: bytes, *, hash_name: HashName, rsa_padding: RsaPadding = "pss") -> bytes:
        self.calls.append((hash_name, len(digest)))
        return self._inner.sign_digest(digest, hash_name=hash_name, rsa_padding=rsa_padding)


def test_make_auth_signs_only_a_digest(kek: Pki, dbcert: Pki) -> None:
    remote = _RemoteLike(kek.signer)
    esl = uefi.esl_from_certificates([dbcert.pem], OWNER)
    auth = uefi.make_auth("db", esl, remote, kek.cert, timestamp=WHEN)
    assert remote.calls == [("sha256", 32)]
    assert auth == uefi.make_auth("db", esl, kek.signer, kek.cert, timestamp=WHEN)


def test_make_auth_refuses_bad_inputs(kek: Pki, pk: Pki, dbcert: Pki) -> None:
    esl = uefi.esl_from_certificates([dbcert.pem], OWNER)
    with pytest.raises(UsageError):
        uefi.make_auth("db", esl, kek.signer, pk.cert)  # a certificate of another key
    with pytest.raises(UsageError):
        uefi.make_auth("DB", esl, kek.signer, kek.cert)
    with pytest.raises(MalformedError):
        uefi.make_auth("db", b"garbage", kek.signer, kek.cert)
    with pytest.raises(UsageError):
        uefi.make_auth("db", esl, kek.signer, kek.cert, timestamp=datetime(2026, 1, 1))  # naive
    # An empty ESL deletes a variable: allowed, as efitools allows it.
    assert uefi.parse_auth(uefi.make_auth("PK", b"", pk.signer, pk.cert, timestamp=WHEN)).esl == b""


def test_an_ecdsa_signer_makes_a_verifiable_auth(tmp_path: Path, dbcert: Pki) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ecdsa kek")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(7)
        .not_valid_before(WHEN - timedelta(days=1))
        .not_valid_after(WHEN + timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    esl = uefi.esl_from_certificates([dbcert.pem], OWNER)
    auth = uefi.make_auth("db", esl, FileSigner(key), cert, timestamp=WHEN)
    assert uefi.check_auth(auth, "db", trusted=[cert]).variable == "db"
    with pytest.raises(VerificationError) as err:
        uefi.check_auth(auth, "dbx", trusted=[cert])
    assert err.value.reason is Reason.POLICY_VIOLATION
    with pytest.raises(VerificationError) as err:  # ECDSA cannot tell a changed ESL from a bad signature
        uefi.check_auth(auth[:-1] + bytes([auth[-1] ^ 1]), "db", trusted=[cert])
    assert err.value.reason is Reason.BAD_SIGNATURE


# -- the Format -----------------------------------------------------------------------------------------------------


def test_format_signs_db_esl_into_db_auth_like_efitools(tmp_path: Path, kek: Pki, dbcert: Pki) -> None:
    fmt = get_format("uefi")
    assert fmt is uefi.FORMAT
    esl = uefi.esl_from_certificates([dbcert.pem], OWNER)
    subject = tmp_path / "db.esl"
    subject.write_bytes(esl)
    opts = fmt.options(certificate=str(kek.cert_path), timestamp=WHEN)
    out = fmt.sign(subject, kek.signer, options=opts)
    assert out == tmp_path / "db.auth"
    assert out.read_bytes() == _efitools_auth(tmp_path, kek, "db", esl, append=False, t=WHEN_TEXT)
    assert fmt.may_carry(subject) and fmt.detect(subject)
    result = fmt.verify(subject, trust=_trust(kek))
    assert result.verified, result.message
    (check,) = result.signatures
    assert check.claims["variable"] == "db" and check.claims["append"] is False
    assert check.signed_at == WHEN
    assert fmt.verify(out, trust=_trust(kek)).verified  # the .auth alone
    info = fmt.inspect(subject)
    assert info["lists"] == [{"type": "x509", "entries": 1}]
    assert info["signatures"][0]["key_id"] == kek.signer.key_id


def test_format_verdicts(tmp_path: Path, kek: Pki, pk: Pki, dbcert: Pki) -> None:
    fmt = uefi.FORMAT
    subject = tmp_path / "db.esl"
    subject.write_bytes(uefi.esl_from_certificates([dbcert.pem], OWNER))
    fmt.sign(subject, kek.signer, options=fmt.options(certificate=kek.pem, append=True))
    assert fmt.verify(subject, trust=_trust(kek)).signatures[0].claims["append"] is True
    assert fmt.verify(subject, trust=_trust(pk)).reason is Reason.UNKNOWN_KEY
    assert fmt.verify(subject, trust=TrustSet()).reason is Reason.UNKNOWN_KEY
    limited = _trust(kek, formats=("native",))
    assert fmt.verify(subject, trust=limited).reason is Reason.POLICY_VIOLATION
    # db.auth renamed dbx.auth is checked as dbx and refused.
    dbx = tmp_path / "dbx.auth"
    dbx.write_bytes((tmp_path / "db.auth").read_bytes())
    assert fmt.verify(dbx, trust=_trust(kek)).reason is Reason.POLICY_VIOLATION
    # A name that names no variable: checked as whichever it was made for, which is reported.
    other = tmp_path / "update.auth"
    other.write_bytes((tmp_path / "db.auth").read_bytes())
    res = fmt.verify(other, trust=_trust(kek))
    assert res.verified and res.signatures[0].claims["variable"] == "db"
    # The ESL beside it differs from the one the update carries.
    subject.write_bytes(uefi.esl_from_certificates([pk.pem], OWNER))
    assert fmt.verify(subject, trust=_trust(kek)).reason is Reason.TAMPERED
    # No .auth at all: unsigned.
    lone = tmp_path / "KEK.esl"
    lone.write_bytes(uefi.esl_from_certificates([kek.pem], OWNER))
    assert fmt.verify(lone, trust=_trust(kek)).reason is Reason.UNSIGNED
    assert not fmt.may_carry(lone)


def test_format_builds_the_esl_from_a_certificate_subject(tmp_path: Path, pk: Pki, kek: Pki) -> None:
    fmt = uefi.FORMAT
    subject = tmp_path / "KEK.crt"
    subject.write_bytes(kek.pem)
    out = fmt.sign(subject, pk.signer, options=fmt.options(certificate=pk.cert_path, owner_guid=OWNER))
    assert out == tmp_path / "KEK.auth"
    auth = uefi.parse_auth(out.read_bytes())
    assert auth.esl == uefi.esl_from_certificates([kek.pem], OWNER)
    assert uefi.check_auth(out.read_bytes(), "KEK", trusted=[pk.cert]).variable == "KEK"


def test_format_options_are_checked(tmp_path: Path, kek: Pki) -> None:
    fmt = uefi.FORMAT
    subject = tmp_path / "list.esl"
    subject.write_bytes(uefi.esl_from_hashes([bytes(32)], OWNER))
    with pytest.raises(UsageError, match="--variable"):
        fmt.sign(subject, kek.signer, options=fmt.options(certificate=kek.pem))
    with pytest.raises(UsageError, match="--certificate"):
        fmt.sign(subject, kek.signer, options=fmt.options(variable="db"))
    with pytest.raises(UsageError):
        fmt.options(variable="DBX")
    with pytest.raises(UsageError):
        fmt.options(armor=True)
    with pytest.raises(UsageError):
        fmt.options(timestamp="yesterday")
    # The command line's spellings: sign-efi-sig-list's -t form (UTC) and ISO 8601.
    assert fmt.options(timestamp=WHEN_TEXT).timestamp == WHEN
    assert fmt.options(timestamp="2026-01-02T04:04:05+01:00").timestamp == WHEN
    assert fmt.options(owner_guid=OWNER).owner_guid == uuid.UUID(OWNER)
    out = fmt.sign(subject, kek.signer, options=fmt.options(variable="dbx", certificate=kek.pem))
    assert uefi.check_auth(out.read_bytes(), "dbx", trusted=[kek.cert]).variable == "dbx"


def test_the_vector_made_by_efitools_verifies() -> None:
    """tests/vectors/balena/uefi-*: a db.auth made by sign-efi-sig-list (see PROVENANCE.md)."""
    auth = (VECTORS / "uefi-db.auth").read_bytes()
    kek_crt = (VECTORS / "uefi-kek.crt").read_bytes()
    check = uefi.check_auth(auth, "db", trusted=[kek_crt])
    assert (check.variable, check.append) == ("db", True)
    assert uefi.parse_auth(auth).esl == (VECTORS / "uefi-db.esl").read_bytes()
    with pytest.raises(VerificationError) as err:
        uefi.check_auth(auth, "dbx", trusted=[kek_crt])
    assert err.value.reason is Reason.POLICY_VIOLATION


# -- hostile input ----------------------------------------------------------------------------------------------------


@settings(max_examples=300, deadline=2000, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=2048))
def test_hostile_esl_is_malformed_or_parsed(data: bytes) -> None:
    try:
        lists = uefi.parse_esl(data)
    except MalformedError:
        return
    assert sum(28 + len(lst.header) + len(lst.entries) * (16 + len(lst.entries[0].data)) for lst in lists) == len(data)


@pytest.mark.filterwarnings("ignore::cryptography.utils.CryptographyDeprecationWarning")  # mutated serials
@settings(max_examples=300, deadline=5000, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    edits=st.lists(st.tuples(st.integers(0, 4000), st.integers(0, 255)), min_size=1, max_size=8), cut=st.integers(0, 64)
)
def test_mutated_auth_never_verifies_wrongly_nor_crashes(
    db_auth: bytes, kek: Pki, edits: list[tuple[int, int]], cut: int
) -> None:
    data = bytearray(db_auth)
    for at, value in edits:
        data[at % len(data)] = value
    mutated = bytes(data[: len(data) - cut])
    try:
        check = uefi.check_auth(mutated, "db", trusted=[kek.cert])
    except SigneryError:
        return
    # Only an edit that leaves everything signed unchanged may pass (e.g. a certificate byte not covered).
    assert uefi.parse_auth(mutated).esl == uefi.parse_auth(db_auth).esl
    assert check.timestamp == uefi.parse_auth(db_auth).timestamp


@settings(max_examples=200, deadline=2000, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=600))
def test_hostile_auth_bytes(kek: Pki, data: bytes) -> None:
    prefix = (
        bytes(16)
        + (24 + len(data)).to_bytes(4, "little")
        + bytes.fromhex("0002f10e")
        + uefi.EFI_CERT_TYPE_PKCS7_GUID.bytes_le
    )
    for candidate in (data, prefix + data):
        with contextlib.suppress(SigneryError):
            uefi.check_auth(candidate, "db", trusted=[kek.cert])
