"""Keys: generation, saving, loading every accepted encoding, key ids against openssl, signing and verifying."""

from __future__ import annotations

import base64
import hashlib
import os
import stat
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from hypothesis import given, settings
from hypothesis import strategies as st

from signery import keys as signery_keys
from signery.errors import MalformedError, Reason, UsageError, VerificationError
from signery.keys import (
    ALGORITHMS,
    FileSigner,
    PrivateKey,
    algorithm_name,
    generate_private_key,
    key_id,
    load_private_key,
    load_private_key_file,
    load_public_key,
    load_public_key_file,
    private_key_pem,
    public_key_pem,
    save_key_pair,
    short_id,
    verify_signature,
)
from support import require_tool

FAST = ("ed25519", "ecdsa-p256", "ecdsa-p384", "rsa-2048", "ml-dsa-65")


@pytest.fixture(scope="module")
def keys() -> dict[str, PrivateKey]:
    """One key per fast algorithm (3072/4096-bit RSA are generated once, in their own test)."""
    return {alg: generate_private_key(alg) for alg in FAST}


def test_every_algorithm_generates_the_right_key() -> None:
    for alg in ALGORITHMS:
        if alg in ("rsa-3072", "rsa-4096"):
            continue
        assert algorithm_name(generate_private_key(alg).public_key()) == alg
    assert algorithm_name(generate_private_key("rsa-3072").public_key()) == "rsa-3072"


def test_unknown_algorithm_is_a_usage_error() -> None:
    for bad in ("rsa-1024", "dsa", "ed448", ""):
        with pytest.raises(UsageError):
            generate_private_key(bad)


@pytest.mark.parametrize("alg", FAST)
def test_save_writes_private_0600_and_public_spki_and_round_trips(
    tmp_path: Path, keys: dict[str, PrivateKey], alg: str
) -> None:
    key = keys[alg]
    paths = save_key_pair(tmp_path / "k.private.pem", tmp_path / "k.public.pem", key)
    assert stat.S_IMODE(paths.private.stat().st_mode) == 0o600
    assert paths.private.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert paths.public.read_bytes().startswith(b"-----BEGIN PUBLIC KEY-----")
    assert key_id(load_private_key_file(paths.private).public_key()) == key_id(key.public_key())
    assert key_id(load_public_key_file(paths.public)) == key_id(key.public_key())
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp files left


def test_save_refuses_to_overwrite_without_force(tmp_path: Path, keys: dict[str, PrivateKey]) -> None:
    priv, pub = tmp_path / "a.private.pem", tmp_path / "a.public.pem"
    save_key_pair(priv, pub, keys["ed25519"])
    before = priv.read_bytes()
    with pytest.raises(UsageError) as info:
        save_key_pair(priv, pub, keys["ecdsa-p256"])
    assert info.value.subject == str(priv)
    assert priv.read_bytes() == before
    pub.unlink()  # only the public half exists -> still refused (a pair is written whole or not at all)
    with pytest.raises(UsageError):
        save_key_pair(priv, pub, keys["ecdsa-p256"])
    save_key_pair(priv, pub, keys["ecdsa-p256"], overwrite=True)
    assert key_id(load_private_key_file(priv).public_key()) == key_id(keys["ecdsa-p256"].public_key())
    assert stat.S_IMODE(priv.stat().st_mode) == 0o600


def test_private_key_is_never_world_readable_even_with_a_permissive_umask(
    tmp_path: Path, keys: dict[str, PrivateKey]
) -> None:
    old = os.umask(0)
    try:
        save_key_pair(tmp_path / "p.pem", tmp_path / "q.pem", keys["ed25519"])
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "p.pem").stat().st_mode) == 0o600


@pytest.mark.parametrize("alg", FAST)
def test_passphrase_encrypted_key_round_trips(tmp_path: Path, keys: dict[str, PrivateKey], alg: str) -> None:
    priv = tmp_path / "enc.pem"
    save_key_pair(priv, tmp_path / "enc.pub", keys[alg], passphrase=b"correct horse")
    assert b"ENCRYPTED PRIVATE KEY" in priv.read_bytes()
    loaded = load_private_key_file(priv, passphrase=b"correct horse")
    assert key_id(loaded.public_key()) == key_id(keys[alg].public_key())
    with pytest.raises(MalformedError) as wrong:
        load_private_key_file(priv, passphrase=b"wrong")
    assert wrong.value.subject == str(priv) and "passphrase" in wrong.value.message
    with pytest.raises(MalformedError) as missing:
        load_private_key_file(priv)
    assert missing.value.reason is Reason.MALFORMED and "encrypted" in missing.value.message


def test_passphrase_given_for_an_unencrypted_key_is_malformed(keys: dict[str, PrivateKey]) -> None:
    with pytest.raises(MalformedError):
        load_private_key(private_key_pem(keys["ed25519"]), passphrase=b"pw")


def _pad(pem: bytes) -> bytes:
    return b"\n\n  \t" + pem.replace(b"\n", b"\r\n") + b"\n\n   \n"


def test_loads_pkcs8_pkcs1_and_sec1_private_keys_with_surrounding_whitespace(keys: dict[str, PrivateKey]) -> None:
    rsa_key, ec_key = keys["rsa-2048"], keys["ecdsa-p256"]
    forms = {
        "pkcs8-rsa": private_key_pem(rsa_key),
        "pkcs1-rsa": private_key_pem(rsa_key, fmt="pkcs1"),
        "sec1-ec": ec_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
        ),
        "pkcs8-ec": private_key_pem(ec_key),
        "pkcs8-ed25519": private_key_pem(keys["ed25519"]),
        "der-pkcs8": rsa_key.private_bytes(
            serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
    }
    assert b"BEGIN RSA PRIVATE KEY" in forms["pkcs1-rsa"]
    assert b"BEGIN EC PRIVATE KEY" in forms["sec1-ec"]
    expected = {"rsa": rsa_key, "ec": ec_key, "ed25519": keys["ed25519"]}
    for label, data in forms.items():
        raw = data if label.startswith("der") else _pad(data)
        loaded = load_private_key(raw, source=label)
        want = expected[label.split("-")[1]] if not label.startswith("der") else rsa_key
        assert key_id(loaded.public_key()) == key_id(want.public_key())
        assert private_key_pem(loaded) == private_key_pem(want)


def test_loads_spki_and_pkcs1_public_keys_with_surrounding_whitespace(
    tmp_path: Path, keys: dict[str, PrivateKey]
) -> None:
    pub = keys["rsa-2048"].public_key()
    spki = public_key_pem(pub)
    pkcs1 = public_key_pem(pub, fmt="pkcs1")
    assert b"BEGIN RSA PUBLIC KEY" in pkcs1
    for data in (spki, pkcs1):
        f = tmp_path / "k.pem"
        f.write_bytes(_pad(data))
        assert key_id(load_public_key_file(f)) == key_id(pub)
    der = pub.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert key_id(load_public_key(der)) == key_id(pub)
    for alg in ("ed25519", "ecdsa-p384"):
        assert key_id(load_public_key(_pad(public_key_pem(keys[alg].public_key())))) == key_id(keys[alg].public_key())


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"   \n",
        b"hello world",
        b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
        b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
        b"\x30\x82\x01\x00garbage",
        bytes(range(256)),
    ],
)
def test_garbage_is_malformed_naming_the_file(tmp_path: Path, data: bytes) -> None:
    f = tmp_path / "garbage.pem"
    f.write_bytes(data)
    for loader in (load_public_key_file, load_private_key_file):
        with pytest.raises(MalformedError) as info:
            loader(f)
        assert info.value.subject == str(f)
        assert str(f) in info.value.message
        assert info.value.exit_code == 2


def test_public_key_loader_refuses_a_private_key_file(tmp_path: Path, keys: dict[str, PrivateKey]) -> None:
    f = tmp_path / "oops.pem"
    f.write_bytes(private_key_pem(keys["ed25519"]))
    with pytest.raises(MalformedError) as info:
        load_public_key_file(f)
    assert info.value.subject == str(f)


def test_missing_and_huge_key_files(tmp_path: Path) -> None:
    with pytest.raises(UsageError):
        load_public_key_file(tmp_path / "nope.pem")
    huge = tmp_path / "huge.pem"
    huge.write_bytes(b"-" * ((1 << 20) + 10))
    with pytest.raises(MalformedError):
        load_public_key_file(huge)


@pytest.fixture(scope="module")
def rsa1024() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505 - the weak key under test


def test_rsa_1024_is_refused_everywhere(tmp_path: Path, rsa1024: rsa.RSAPrivateKey) -> None:
    with pytest.raises(MalformedError, match="too weak"):
        load_private_key(private_key_pem(rsa1024), source="weak")  # type: ignore[arg-type]
    with pytest.raises(MalformedError, match="too weak"):
        load_public_key(public_key_pem(rsa1024.public_key()), source="weak")  # type: ignore[arg-type]
    with pytest.raises(MalformedError, match="too weak"):
        FileSigner(rsa1024)


def test_unsupported_curve_is_refused() -> None:
    k = ec.generate_private_key(ec.SECP256K1())
    pem = k.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    with pytest.raises(MalformedError, match="curve"):
        load_public_key(pem)


@pytest.mark.parametrize("alg", FAST)
def test_key_id_is_sha256_of_der_spki_as_openssl_computes_it(
    tmp_path: Path, keys: dict[str, PrivateKey], alg: str
) -> None:
    openssl = require_tool("openssl")
    pub = tmp_path / "pub.pem"
    pub.write_bytes(public_key_pem(keys[alg].public_key()))
    run = subprocess.run([openssl, "pkey", "-pubin", "-in", str(pub), "-outform", "DER"], capture_output=True)
    if run.returncode and alg == "ml-dsa-65":
        # OpenSSL before 3.5 has no ML-DSA: the SPKI is then the PEM's base64 body, decoded by hand
        body = b"".join(line for line in pub.read_bytes().splitlines() if not line.startswith(b"-----"))
        run = subprocess.CompletedProcess(run.args, 0, base64.b64decode(body), b"")
    der = run.stdout
    assert run.returncode == 0, run.stderr
    kid = key_id(keys[alg].public_key())
    assert kid == hashlib.sha256(der).hexdigest()
    assert kid == kid.lower() and len(kid) == 64
    assert short_id(kid) == kid[:16]
    # the PKCS#1 form of an RSA public key names the same key
    if alg.startswith("rsa"):
        assert key_id(load_public_key(public_key_pem(keys[alg].public_key(), fmt="pkcs1"))) == kid  # type: ignore[arg-type]


MSG = b"the package statement"


@pytest.mark.parametrize("alg", FAST)
def test_sign_and_verify_each_algorithm(keys: dict[str, PrivateKey], alg: str) -> None:
    signer = FileSigner(keys[alg], name="k")
    assert signer.key_id == key_id(keys[alg].public_key())
    paddings = ("pss", "pkcs1v15") if alg.startswith("rsa") else ("pss",)
    for pad in paddings:
        sig = signer.sign(MSG, rsa_padding=pad)  # type: ignore[arg-type]
        verify_signature(signer.public_key(), sig, MSG, rsa_padding=pad)  # type: ignore[arg-type]
        with pytest.raises(VerificationError) as info:
            verify_signature(signer.public_key(), sig, MSG + b"!", rsa_padding=pad)  # type: ignore[arg-type]
        assert info.value.reason is Reason.BAD_SIGNATURE
        bad = bytearray(sig)
        bad[len(bad) // 2] ^= 1
        with pytest.raises(VerificationError):
            verify_signature(signer.public_key(), bytes(bad), MSG, rsa_padding=pad)  # type: ignore[arg-type]


def test_rsa_paddings_are_not_interchangeable(keys: dict[str, PrivateKey]) -> None:
    signer = FileSigner(keys["rsa-2048"])
    pss = signer.sign(MSG, rsa_padding="pss")
    with pytest.raises(VerificationError):
        verify_signature(signer.public_key(), pss, MSG, rsa_padding="pkcs1v15")
    v15 = signer.sign(MSG, rsa_padding="pkcs1v15")
    with pytest.raises(VerificationError):
        verify_signature(signer.public_key(), v15, MSG, rsa_padding="pss")


def test_signature_by_another_key_is_bad(keys: dict[str, PrivateKey]) -> None:
    sig = FileSigner(keys["ecdsa-p256"]).sign(MSG)
    other = generate_private_key("ecdsa-p256").public_key()
    with pytest.raises(VerificationError) as info:
        verify_signature(other, sig, MSG)
    assert info.value.reason is Reason.BAD_SIGNATURE


@pytest.mark.parametrize(
    ("alg", "hash_name"), [("ecdsa-p256", "sha256"), ("ecdsa-p384", "sha384"), ("rsa-2048", "sha256")]
)
def test_sign_digest_matches_signing_the_message(keys: dict[str, PrivateKey], alg: str, hash_name: str) -> None:
    signer = FileSigner(keys[alg])
    h = {"sha256": hashes.SHA256, "sha384": hashes.SHA384}[hash_name]()
    d = hashes.Hash(h)
    d.update(MSG)
    digest = d.finalize()
    pads = ("pss", "pkcs1v15") if alg.startswith("rsa") else ("pss",)
    for pad in pads:
        sig = signer.sign_digest(digest, hash_name=hash_name, rsa_padding=pad)  # type: ignore[arg-type]
        verify_signature(signer.public_key(), sig, MSG, hash_name=hash_name, rsa_padding=pad)  # type: ignore[arg-type]
        verify_signature(
            signer.public_key(),
            sig,
            digest,
            hash_name=hash_name,  # type: ignore[arg-type]
            rsa_padding=pad,  # type: ignore[arg-type]
            prehashed=True,
        )
    with pytest.raises(UsageError):
        signer.sign_digest(digest[:-1], hash_name=hash_name)  # type: ignore[arg-type]
    with pytest.raises(UsageError):
        signer.sign_digest(digest, hash_name="md5")  # type: ignore[arg-type]


def test_ed25519_cannot_sign_a_digest(keys: dict[str, PrivateKey]) -> None:
    signer = FileSigner(keys["ed25519"])
    with pytest.raises(UsageError):
        signer.sign_digest(b"\0" * 32, hash_name="sha256")
    with pytest.raises(UsageError):
        verify_signature(signer.public_key(), b"\0" * 64, b"\0" * 32, prehashed=True)


def test_repr_never_shows_key_material(keys: dict[str, PrivateKey]) -> None:
    for alg in FAST:
        signer = FileSigner(keys[alg], name="secret-name")
        text = repr(signer) + str(signer)
        assert "PRIVATE" not in text and "-----" not in text
        pem = private_key_pem(keys[alg]).decode()
        body = "".join(pem.splitlines()[1:-1])
        assert body[:20] not in text
        assert short_id(signer.key_id) in text


def test_file_signer_refuses_non_signing_key_types() -> None:
    from cryptography.hazmat.primitives.asymmetric import x25519

    with pytest.raises(UsageError):
        FileSigner(x25519.X25519PrivateKey.generate())  # type: ignore[arg-type]


def test_der_keys_ending_in_a_whitespace_byte_load_intact() -> None:
    """DER is binary: only PEM input may be stripped (a stripped DER key loses its last byte)."""
    from cryptography.hazmat.primitives import serialization

    from signery.keys import generate_private_key, key_id, load_private_key, load_public_key

    whitespace = b" \t\n\r\x0b\x0c"
    for _ in range(2000):  # about one Ed25519 key in twenty ends in such a byte
        key = generate_private_key("ed25519")
        der = key.private_bytes(
            serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        if der[-1:] in whitespace:
            break
    else:
        raise AssertionError("no DER key ending in whitespace was generated")
    assert key_id(load_private_key(der).public_key()) == key_id(key.public_key())
    for _ in range(2000):
        pub = generate_private_key("ed25519").public_key()
        spki = pub.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        if spki[-1:] in whitespace:
            break
    else:
        raise AssertionError("no DER public key ending in whitespace was generated")
    assert key_id(load_public_key(spki)) == key_id(pub)


# -- the Ed25519 shortcut (no cryptography.serialization import) against cryptography's own encoders/parsers ----


def test_ed25519_spki_and_pem_match_cryptography() -> None:
    for _ in range(20):
        pub = ed25519.Ed25519PrivateKey.generate().public_key()
        der = pub.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        pem = pub.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        assert signery_keys.spki_der(pub) == der
        assert signery_keys.public_key_pem(pub) == pem
        assert signery_keys.key_id(pub) == hashlib.sha256(der).hexdigest()
        for variant in (pem, pem.replace(b"\n", b"\r\n"), b"\n  " + pem + b"  \n"):
            loaded = signery_keys.load_public_key(variant)
            assert isinstance(loaded, ed25519.Ed25519PublicKey)
            assert loaded.public_bytes_raw() == pub.public_bytes_raw()


@settings(max_examples=200)
@given(st.binary(min_size=0, max_size=48), st.sampled_from([b"", b"\n", b"===", b" x"]))
def test_ed25519_pem_shortcut_agrees_with_the_full_parser(raw: bytes, noise: bytes) -> None:
    body = base64.b64encode(bytes.fromhex("302a300506032b6570032100") + raw) + noise
    pem = b"-----BEGIN PUBLIC KEY-----\n" + body + b"\n-----END PUBLIC KEY-----\n"
    try:
        want: bytes | None = serialization.load_pem_public_key(pem).public_bytes_raw()  # type: ignore[union-attr]
    except (ValueError, AttributeError):
        want = None
    try:
        got: bytes | None = signery_keys.load_public_key(pem).public_bytes_raw()  # type: ignore[union-attr]
    except (MalformedError, AttributeError):
        got = None
    assert got == want


def test_ed25519_private_key_shortcut_matches_cryptography() -> None:
    for _ in range(10):
        key = ed25519.Ed25519PrivateKey.generate()
        plain = serialization.NoEncryption()
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, plain)
        for variant in (pem, pem.replace(b"\n", b"\r\n"), b"\n" + pem + b"  "):
            loaded = signery_keys.load_private_key(variant)
            assert isinstance(loaded, ed25519.Ed25519PrivateKey)
            assert loaded.private_bytes_raw() == key.private_bytes_raw()
        with pytest.raises(MalformedError, match="not encrypted"):
            signery_keys.load_private_key(pem, passphrase=b"pw")  # the full parser still judges passphrases
        encrypted = signery_keys.private_key_pem(key, passphrase=b"pw")
        again = signery_keys.load_private_key(encrypted, passphrase=b"pw")
        assert isinstance(again, ed25519.Ed25519PrivateKey) and again.private_bytes_raw() == key.private_bytes_raw()
