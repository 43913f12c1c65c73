"""OpenPGP interoperability with the real tools: gpg (temporary GNUPGHOME), sq and sqop.

Every bullet of issue 4's "Interoperability" section is here: signery's signatures verify with gpg, sq and sqop
(binary and armored, RSA, Ed25519 and ECDSA); gpg's and sq's detached signatures verify in signery; gpg secret keys
(passphrase, signing subkey, binary or armored, NIST P-256) sign in signery; signery keys import into gpg and sq;
plain ``keys.FileSigner`` keys bound to a certificate sign for gpg, sq and sqop; SHA-1, expired and revoked keys
give the right reasons. Certificates are compared with pysequoia and gpg's own view.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pysequoia
import pytest

from signery import keys, openpgp
from signery.errors import MalformedError, Reason
from signery.formats import openpgp as fmt
from signery.trust import TrustSet, load_trusted_key_file
from support import require_tool

PASS = "correct horse"


@dataclass
class Gpg:
    home: Path

    def __call__(
        self, *args: str, input: bytes | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[bytes]:
        cmd = ["gpg", "--homedir", str(self.home), "--batch", "--yes", "--no-tty", "--pinentry-mode", "loopback"]
        cmd += ["--passphrase", PASS, *args]
        proc = subprocess.run(cmd, input=input, capture_output=True, timeout=120)
        if check and proc.returncode != 0:
            raise AssertionError(f"{' '.join(args)} failed: {proc.stderr.decode(errors='replace')}")
        return proc

    def fingerprint(self, uid: str) -> str:
        out = self("--with-colons", "--list-keys", uid).stdout.decode()
        return next(line.split(":")[9] for line in out.splitlines() if line.startswith("fpr:")).lower()

    def subkeys(self, uid: str) -> list[str]:
        out = self("--with-colons", "--list-keys", uid).stdout.decode().splitlines()
        return [out[i + 1].split(":")[9].lower() for i, line in enumerate(out) if line.startswith("sub:")]


def _run(*cmd: str, input: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(list(cmd), input=input, capture_output=True, timeout=120)


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("pgp")


@pytest.fixture(scope="module")
def gpg(work: Path) -> Gpg:
    require_tool("gpg")
    home = work / "gnupg"
    home.mkdir(mode=0o700)
    g = Gpg(home)
    # Ed25519 primary that only certifies, with an Ed25519 signing subkey: the shape gpg users get by default.
    g("--quick-gen-key", "Erin <erin@example.org>", "ed25519", "cert", "never")
    g("--quick-add-key", g.fingerprint("erin@example.org"), "ed25519", "sign", "never")
    # RSA-3072 primary that signs itself, as Mattermost's guide makes.
    g("--quick-gen-key", "Rita <rita@example.org>", "rsa3072", "sign", "never")
    # ECDSA over NIST P-256, the curve most HSMs hold.
    g("--quick-gen-key", "Nina <nina@example.org>", "nistp256", "sign", "never")
    return g


@pytest.fixture(scope="module")
def subject(work: Path) -> Path:
    p = work / "plugin-0.1.0.tar.gz"
    p.write_bytes(bytes(range(256)) * 4096 + b"end")
    return p


def _trust_from(*certs: tuple[str, bytes], work: Path) -> TrustSet:
    keys = []
    for name, data in certs:
        p = work / f"{name}.trust.asc"
        p.write_bytes(data)
        keys.append(load_trusted_key_file(p, name=name).key)
    return TrustSet(keys)


@pytest.fixture(scope="module")
def signery_keys(work: Path) -> dict[str, openpgp.GeneratedKey]:
    return {
        "ed25519": openpgp.generate_key("Sig Nery <ed@example.org>", algorithm="ed25519", passphrase=PASS.encode()),
        "rsa-3072": openpgp.generate_key("Sig Nery <rsa@example.org>", algorithm="rsa-3072"),
    }


# -- signery signs, the others verify -----------------------------------------------------------------------------


@pytest.mark.parametrize("alg", ["ed25519", "rsa-3072"])
@pytest.mark.parametrize("armored", [False, True])
def test_signery_signature_verifies_with_gpg_sq_sqop(
    alg: str, armored: bool, signery_keys: dict[str, openpgp.GeneratedKey], subject: Path, work: Path
) -> None:
    for tool in ("gpg", "sq", "sqop"):
        require_tool(tool)
    key = signery_keys[alg]
    pub = work / f"{alg}.public.asc"
    pub.write_text(key.public_armored)
    signer = openpgp.load_signer(key.secret_armored.encode(), passphrase=PASS.encode(), source="k")
    sig = fmt.sign(subject, signer, output=work / f"{alg}-{armored}.sig", armor=armored)
    home = work / f"home-{alg}-{armored}"
    home.mkdir(mode=0o700)
    g = Gpg(home)
    g("--import", str(pub))
    out = g("--verify", str(sig), str(subject), check=False)
    assert out.returncode == 0 and b"Good signature" in out.stderr, out.stderr
    sq = _run("sq", "verify", "--detached", str(sig), "--signer-cert", str(pub), str(subject))
    assert sq.returncode == 0, sq.stderr
    sqop = _run("sqop", "verify", str(sig), str(pub), input=subject.read_bytes())
    assert sqop.returncode == 0 and key.fingerprint.upper() in sqop.stdout.decode().upper()
    # ...and every one of them refuses it over other bytes
    other = work / "other.bin"
    other.write_bytes(subject.read_bytes() + b"x")
    assert g("--verify", str(sig), str(other), check=False).returncode != 0
    assert _run("sq", "verify", "--detached", str(sig), "--signer-cert", str(pub), str(other)).returncode != 0


# -- the others sign, signery verifies ----------------------------------------------------------------------------


@pytest.mark.parametrize("uid", ["erin@example.org", "rita@example.org", "nina@example.org"])
@pytest.mark.parametrize("armored", [False, True])
def test_gpg_detached_signature_verifies(gpg: Gpg, uid: str, armored: bool, subject: Path, work: Path) -> None:
    sig = work / f"gpg-{uid}-{armored}.sig"
    gpg("--local-user", uid, *(["--armor"] if armored else []), "--output", str(sig), "--detach-sign", str(subject))
    trust = _trust_from((uid, gpg("--export", uid).stdout), work=work)
    result = fmt.verify(subject, trust=trust, signature=sig)
    assert result.verified, result.to_dict()
    (check,) = result.signatures
    assert check.key_id == gpg.fingerprint(uid)
    if uid.startswith("erin"):
        assert check.claims["signing_key"] == gpg.subkeys(uid)[0]  # the signing subkey signed


def test_sq_detached_signature_verifies(subject: Path, work: Path) -> None:
    require_tool("sq")
    key = work / "carol.pgp"
    gen = _run("sq", "key", "generate", "--userid", "Carol <carol@example.org>", "--export", str(key))
    assert gen.returncode == 0, gen.stderr
    sig = work / "carol.sig"
    out = _run("sq", "sign", "--detached", "--signer-key", str(key), "--output", str(sig), str(subject))
    assert out.returncode == 0, out.stderr
    cert = _run("sq", "key", "extract-cert", str(key)).stdout
    trust = _trust_from(("carol", cert), work=work)
    result = fmt.verify(subject, trust=trust, signature=sig)
    assert result.verified, result.to_dict()
    # the same sq key signs in signery too (unprotected secret key, sq's own packet layout)
    signer = openpgp.load_signer(key.read_bytes(), source=str(key))
    sig2 = fmt.sign(subject, signer, output=work / "carol2.sig")
    assert _run("sq", "verify", "--detached", str(sig2), "--signer-cert", str(key), str(subject)).returncode == 0


def test_sqop_signature_with_signery_key_verifies(
    signery_keys: dict[str, openpgp.GeneratedKey], subject: Path, work: Path
) -> None:
    require_tool("sqop")
    key = work / "sqop.key"
    key.write_text(signery_keys["ed25519"].secret_armored)
    out = _run("sqop", "sign", "--with-key-password", str(_pw_file(work)), str(key), input=subject.read_bytes())
    assert out.returncode == 0, out.stderr
    sig = work / "sqop.sig"
    sig.write_bytes(out.stdout)
    trust = _trust_from(("ed", signery_keys["ed25519"].public_armored.encode()), work=work)
    assert fmt.verify(subject, trust=trust, signature=sig).verified


def _pw_file(work: Path) -> Path:
    p = work / "pw.txt"
    p.write_text(PASS)
    return p


# -- keys cross over ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("armored", [False, True])
def test_gpg_secret_key_with_subkey_signs_in_signery(gpg: Gpg, armored: bool, subject: Path, work: Path) -> None:
    uid = "erin@example.org"
    secret = gpg(*(["--armor"] if armored else []), "--export-secret-keys", uid).stdout
    signer = openpgp.load_signer(secret, passphrase=PASS.encode(), source="erin.sec")
    assert signer.fingerprint == gpg.subkeys(uid)[0] and signer.pubkey_algorithm == 22
    sig = fmt.sign(subject, signer, output=work / f"erin-by-signery-{armored}.sig", armor=armored)
    out = gpg("--verify", str(sig), str(subject), check=False)
    assert out.returncode == 0 and b"Good signature" in out.stderr
    info = openpgp.inspect_certificate(secret, source="erin.sec")
    assert info.was_secret and info.signing_subkeys == gpg.subkeys(uid)


def test_gpg_rsa_secret_key_signs_in_signery(gpg: Gpg, subject: Path, work: Path) -> None:
    secret = gpg("--export-secret-keys", "rita@example.org").stdout
    signer = openpgp.load_signer(secret, passphrase=PASS.encode(), source="rita.sec")
    assert signer.pubkey_algorithm == 1 and signer.fingerprint == gpg.fingerprint("rita@example.org")
    sig = fmt.sign(subject, signer, output=work / "rita-by-signery.sig")
    assert gpg("--verify", str(sig), str(subject), check=False).returncode == 0


def test_gpg_ecdsa_secret_key_signs_in_signery(gpg: Gpg, subject: Path, work: Path) -> None:
    secret = gpg("--export-secret-keys", "nina@example.org").stdout
    signer = openpgp.load_signer(secret, passphrase=PASS.encode(), source="nina.sec")
    assert signer.pubkey_algorithm == 19 and signer.fingerprint == gpg.fingerprint("nina@example.org")
    sig = fmt.sign(subject, signer, output=work / "nina-by-signery.sig")
    out = gpg("--verify", str(sig), str(subject), check=False)
    assert out.returncode == 0 and b"Good signature" in out.stderr, out.stderr


@pytest.mark.parametrize("alg", ["ed25519", "ecdsa-p256", "ecdsa-p384", "rsa-3072"])
def test_plain_file_signer_bound_to_its_certificate_verifies_everywhere(alg: str, subject: Path, work: Path) -> None:
    """One Signer: a PEM key (what native and Dify sign with, or an HSM) signs OpenPGP once bound to a certificate."""
    for tool in ("gpg", "sq", "sqop"):
        require_tool(tool)
    plain = keys.FileSigner(keys.generate_private_key(alg))
    cert = openpgp.certificate_for(plain, uid=f"Plain <{alg}@example.org>", created=datetime.now(UTC))
    pub = work / f"plain-{alg}.asc"
    pub.write_text(cert)
    sig = fmt.sign(subject, plain, certificate=cert, output=work / f"plain-{alg}.sig")
    home = work / f"home-plain-{alg}"
    home.mkdir(mode=0o700)
    g = Gpg(home)
    g("--import", str(pub))
    out = g("--verify", str(sig), str(subject), check=False)
    assert out.returncode == 0 and b"Good signature" in out.stderr, out.stderr
    sq = _run("sq", "verify", "--detached", str(sig), "--signer-cert", str(pub), str(subject))
    assert sq.returncode == 0, sq.stderr
    sqop = _run("sqop", "verify", str(sig), str(pub), input=subject.read_bytes())
    assert sqop.returncode == 0, sqop.stderr
    assert fmt.verify(subject, trust=_trust_from((alg, cert.encode()), work=work), signature=sig).verified


def test_signery_secret_key_imports_into_gpg(
    signery_keys: dict[str, openpgp.GeneratedKey], subject: Path, work: Path
) -> None:
    require_tool("gpg")
    home = work / "home-import"
    home.mkdir(mode=0o700)
    g = Gpg(home)
    key = signery_keys["ed25519"]
    (work / "ed.private.asc").write_text(key.secret_armored)
    g("--import", str(work / "ed.private.asc"))
    listing = g("--with-colons", "--list-secret-keys").stdout.decode()
    assert key.fingerprint.upper() in listing
    sig = work / "gpg-with-signery-key.sig"
    g("--local-user", key.fingerprint, "--output", str(sig), "--detach-sign", str(subject))
    trust = _trust_from(("ed", key.public_armored.encode()), work=work)
    assert fmt.verify(subject, trust=trust, signature=sig).verified


def test_certificates_agree_with_sequoia_and_gpg(gpg: Gpg, signery_keys: dict[str, openpgp.GeneratedKey]) -> None:
    require_tool("sq")
    for uid in ("erin@example.org", "rita@example.org"):
        data = gpg("--export", uid).stdout
        info = openpgp.inspect_certificate(data, source=uid)
        cert = pysequoia.Cert.from_bytes(data)
        assert info.fingerprint == cert.fingerprint == gpg.fingerprint(uid)
        assert info.uids == [str(u) for u in cert.user_ids]
        assert info.expires == cert.expiration and info.revoked == cert.is_revoked
    for key in signery_keys.values():
        out = _run("sq", "inspect", input=key.public_armored.encode())
        assert out.returncode == 0 and key.fingerprint.upper() in out.stdout.decode()


# -- refusals with the right reason ------------------------------------------------------------------------------


def test_gpg_sha1_signature_refused(gpg: Gpg, subject: Path, work: Path) -> None:
    sig = work / "sha1.sig"
    gpg(
        "--local-user", "rita@example.org", "--digest-algo", "SHA1", "--output", str(sig), "--detach-sign", str(subject)
    )
    trust = _trust_from(("rita", gpg("--export", "rita@example.org").stdout), work=work)
    result = fmt.verify(subject, trust=trust, signature=sig)
    assert result.reason is Reason.BAD_SIGNATURE and "SHA1" in result.message


def test_gpg_expired_key(work: Path, subject: Path) -> None:
    require_tool("gpg")
    home = work / "home-expired"
    home.mkdir(mode=0o700)
    g = Gpg(home)
    past = datetime.now(UTC) - timedelta(days=800)
    when = past.strftime("%Y%m%dT%H%M%S")
    g("--faked-system-time", when, "--quick-gen-key", "Old <old@example.org>", "ed25519", "sign", "1y")
    sig = work / "expired.sig"
    g("--faked-system-time", when, "--output", str(sig), "--detach-sign", str(subject))
    data = g("--export", "old@example.org").stdout
    info = openpgp.inspect_certificate(data, source="old")
    assert info.expires is not None and info.expires < datetime.now(UTC)
    result = fmt.verify(subject, trust=_trust_from(("old", data), work=work), signature=sig)
    assert result.reason is Reason.EXPIRED_KEY, result.to_dict()
    # back when the key was valid, the same signature was good: only the expiry refuses it
    then = fmt.verify(subject, trust=_trust_from(("old", data), work=work), signature=sig, now=past + timedelta(days=1))
    assert then.verified


def test_gpg_revoked_key_with_revocation_certificate(work: Path, subject: Path) -> None:
    require_tool("gpg")
    home = work / "home-revoked"
    home.mkdir(mode=0o700)
    g = Gpg(home)
    g("--quick-gen-key", "Rev <rev@example.org>", "ed25519", "sign", "never")
    fpr = g.fingerprint("rev@example.org")
    sig = work / "revoked.sig"
    g("--output", str(sig), "--detach-sign", str(subject))
    before = g("--export", fpr).stdout
    assert fmt.verify(subject, trust=_trust_from(("rev", before), work=work), signature=sig).verified
    rev = (home / "openpgp-revocs.d" / f"{fpr.upper()}.rev").read_text()
    rev = rev.replace(":-----BEGIN", "-----BEGIN")  # gpg guards the stored certificate against accidental import
    (work / "rev.asc").write_text(rev)
    g("--import", str(work / "rev.asc"))
    after = g("--export", fpr).stdout
    info = openpgp.inspect_certificate(after, source="rev")
    assert info.revoked and pysequoia.Cert.from_bytes(after).is_revoked
    result = fmt.verify(subject, trust=_trust_from(("rev", after), work=work), signature=sig)
    assert result.reason is Reason.REVOKED_KEY


def test_unknown_gpg_key_reported_with_fingerprint(gpg: Gpg, subject: Path, work: Path) -> None:
    sig = work / "unknown.sig"
    gpg("--local-user", "rita@example.org", "--output", str(sig), "--detach-sign", str(subject))
    result = fmt.verify(subject, trust=TrustSet(), signature=sig)
    assert result.reason is Reason.UNKNOWN_KEY and result.fault == gpg.fingerprint("rita@example.org")


# -- differential: corrupted signatures are refused by everyone --------------------------------------------------


@pytest.mark.parametrize("offset", [-1, -20, -60, 8])
def test_corrupted_signatures_refused_by_both(gpg: Gpg, subject: Path, work: Path, offset: int) -> None:
    uid = "rita@example.org"
    sig = work / "diff.sig"
    gpg("--local-user", uid, "--output", str(sig), "--detach-sign", str(subject), check=True)
    trust = _trust_from((uid, gpg("--export", uid).stdout), work=work)
    raw = bytearray(sig.read_bytes())
    raw[offset] ^= 0x10
    bad = work / f"diff{offset}.sig"
    bad.write_bytes(bytes(raw))
    gpg_ok = gpg("--verify", str(bad), str(subject), check=False).returncode == 0
    try:
        signery_ok = fmt.verify(subject, trust=trust, signature=bad).verified
    except MalformedError:
        signery_ok = False
    assert gpg_ok == signery_ok
