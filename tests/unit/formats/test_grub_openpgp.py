"""GRUB-compatible OpenPGP: what signery's OpenPGP format writes with an RSA key is what GRUB's verifier accepts.

GRUB's ``verify_detached`` (rhboot/grub2 ``grub-core/commands/pgp.c``, summarised in dropin.md §1.2) takes only: a
signature packet first (old or new framing), version 4, type 0x00 (binary document), public-key algorithm RSA (1 or
3) or DSA (17), a hash module that is built in (meta-balena builds in SHA-256 and SHA-512), and the issuer key id
(subpacket 16) in the *unhashed* area, the only place it looks, with an unhashed area of at most 4096 bytes. The
parser below is written from those rules, independently of signery's. gpgv and sqv then check the same signature
against the key as ``grub-mkimage --pubkey`` embeds it (a binary, dearmored public key).
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from signery import openpgp
from signery.formats import get_format
from signery.formats import openpgp as pgp_format
from signery.openpgp import dearmor
from support import require_tool

CREATED = datetime(2026, 1, 1, tzinfo=UTC)
GRUB_PK_ALGOS = {1, 3, 17}
GRUB_HASHES = {8: "sha256", 10: "sha512"}  # gcry_sha256 and gcry_sha512, as meta-balena's grub-efi builds in
MAX_UNHASHED = 4096


@dataclass(frozen=True)
class GrubView:
    """A signature as GRUB reads it."""

    version: int
    sig_type: int
    pk_algo: int
    hash_algo: int
    hashed: list[tuple[int, bytes]]
    unhashed: list[tuple[int, bytes]]
    unhashed_len: int


def _subpackets(area: bytes) -> list[tuple[int, bytes]]:
    out, pos = [], 0
    while pos < len(area):
        first = area[pos]
        if first < 192:
            length, pos = first, pos + 1
        elif first < 255:
            length, pos = ((first - 192) << 8) + area[pos + 1] + 192, pos + 2
        else:
            length, pos = int.from_bytes(area[pos + 1 : pos + 5], "big"), pos + 5
        assert length >= 1 and pos + length <= len(area), "subpacket runs past its area"
        out.append((area[pos] & 0x7F, area[pos + 1 : pos + length]))
        pos += length
    return out


def grub_parse(sig: bytes) -> GrubView:
    """Read the first packet as GRUB does; assert what GRUB requires of its framing."""
    head = sig[0]
    assert head & 0x80, "not an OpenPGP packet"
    if head & 0x40:  # new framing
        assert head & 0x3F == 2, "first packet is not a signature"
        first = sig[1]
        if first < 192:
            body_at, length = 2, first
        elif first < 224:
            body_at, length = 3, ((first - 192) << 8) + sig[2] + 192
        else:
            assert first == 255, "partial body lengths are not a signature"
            body_at, length = 6, int.from_bytes(sig[2:6], "big")
    else:  # old framing
        assert (head >> 2) & 0x0F == 2, "first packet is not a signature"
        n = {0: 1, 1: 2, 2: 4}[head & 0x03]
        body_at, length = 1 + n, int.from_bytes(sig[1 : 1 + n], "big")
    body = sig[body_at : body_at + length]
    assert len(body) == length
    version, sig_type, pk_algo, hash_algo = body[0], body[1], body[2], body[3]
    hashed_len = int.from_bytes(body[4:6], "big")
    hashed = body[6 : 6 + hashed_len]
    at = 6 + hashed_len
    unhashed_len = int.from_bytes(body[at : at + 2], "big")
    unhashed = body[at + 2 : at + 2 + unhashed_len]
    return GrubView(version, sig_type, pk_algo, hash_algo, _subpackets(hashed), _subpackets(unhashed), unhashed_len)


def assert_grub_accepts(sig: bytes, fingerprint: str) -> GrubView:
    view = grub_parse(sig)
    assert view.version == 4
    assert view.sig_type == 0x00
    assert view.pk_algo in GRUB_PK_ALGOS - {17}, f"GRUB + balena need RSA, got algorithm {view.pk_algo}"
    assert view.hash_algo in GRUB_HASHES
    assert view.unhashed_len <= MAX_UNHASHED
    issuers = [data for kind, data in view.unhashed if kind == 16]
    assert issuers == [bytes.fromhex(fingerprint)[-8:]], "GRUB finds the key only by subpacket 16, unhashed"
    return view


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(65537, 3072)


def _keyring(tmp_path: Path, armored: str) -> Path:
    """The public key as grub-mkimage --pubkey takes it (balena: gpg --dearmor of /gpg/key)."""
    ring = tmp_path / "grub.gpg"
    ring.write_bytes(dearmor(armored.encode(), source="cert")[0])
    return ring


def _check_with_gpgv_and_sqv(tmp_path: Path, ring: Path, sig: Path, data: Path) -> None:
    gpgv = require_tool("gpgv")
    home = tmp_path / "gnupg"
    home.mkdir(mode=0o700, exist_ok=True)
    proc = subprocess.run(
        [gpgv, "--homedir", str(home), "--keyring", str(ring), str(sig), str(data)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Good signature" in proc.stderr
    sqv = require_tool("sqv")
    proc = subprocess.run(
        [sqv, "--keyring", str(ring), str(sig), str(data)], capture_output=True, text=True, check=False, timeout=60
    )
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("hash_algorithm", [None, "sha256", "sha512"])
def test_a_plain_rsa_signer_writes_what_grub_accepts(
    tmp_path: Path, rsa_key: rsa.RSAPrivateKey, hash_algorithm: str | None
) -> None:
    """The signing service's path: a PEM RSA key bound to its OpenPGP creation time."""
    signer = openpgp.signer_from_private_key(rsa_key, created=CREATED)
    cert = openpgp.certificate_from_private_key(rsa_key, uid="balenaOS GRUB <grub@example.org>", created=CREATED)
    data = tmp_path / "grub.cfg"
    data.write_bytes(b"set timeout=0\nlinux /bzImage root=LABEL=resin-rootA\n")
    fmt = get_format("openpgp")
    sig = fmt.sign(data, signer, options=fmt.options(hash_algorithm=hash_algorithm))
    raw = sig.read_bytes()
    view = assert_grub_accepts(raw, signer.fingerprint)
    if hash_algorithm is not None:
        assert GRUB_HASHES[view.hash_algo] == hash_algorithm
    # The hashed area holds the creation time and the issuer fingerprint; GRUB ignores both, gpg and sq use them.
    assert {kind for kind, _ in view.hashed} == {2, 33}
    _check_with_gpgv_and_sqv(tmp_path, _keyring(tmp_path, cert), sig, data)


def test_a_generated_openpgp_key_writes_what_grub_accepts(tmp_path: Path) -> None:
    key = openpgp.generate_key("GRUB <grub@example.org>", algorithm="rsa-3072")
    signer = openpgp.load_signer(key.secret_armored.encode(), source="grub.private.asc")
    data = tmp_path / "bzImage.signed"
    data.write_bytes(bytes(range(256)) * 4096)
    sig = pgp_format.sign(data, signer)
    assert sig == tmp_path / "bzImage.signed.sig"
    assert_grub_accepts(sig.read_bytes(), key.fingerprint)
    _check_with_gpgv_and_sqv(tmp_path, _keyring(tmp_path, key.public_armored), sig, data)
    data.write_bytes(data.read_bytes() + b"x")
    home = tmp_path / "gnupg"
    proc = subprocess.run(
        [require_tool("gpgv"), "--homedir", str(home), "--keyring", str(tmp_path / "grub.gpg"), str(sig), str(data)],
        capture_output=True,
        check=False,
    )
    assert proc.returncode != 0


def test_the_checker_refuses_what_grub_refuses(tmp_path: Path) -> None:
    """An Ed25519 signature (GRUB has no EdDSA) and an armored one (GRUB reads binary) fail the rules above."""
    ed = openpgp.signer_from_private_key(ed25519.Ed25519PrivateKey.generate(), created=CREATED)
    data = tmp_path / "grub.cfg"
    data.write_bytes(b"x")
    sig = pgp_format.sign(data, ed)
    with pytest.raises(AssertionError, match="RSA"):
        assert_grub_accepts(sig.read_bytes(), ed.fingerprint)
    armored = pgp_format.sign(data, ed, output=tmp_path / "a.asc", armor=True)
    with pytest.raises(AssertionError):
        assert_grub_accepts(armored.read_bytes(), ed.fingerprint)
