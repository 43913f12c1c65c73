"""PKCS#11 signers against a real (software) token: SoftHSM2, in a throwaway token directory per module.

Keys are generated inside the token, sign through :class:`signery.pkcs11.PKCS11Signer`, and the signatures are
checked by signery's own verifier, by OpenSSL, and through the native and Dify formats. The URI parser is tested
on its own (no token needed), with hypothesis.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from hypothesis import given, settings
from hypothesis import strategies as st

from signery import keys
from signery.errors import ConfigError, ConflictError, NotFoundError, Reason, SigneryError, UsageError
from signery.formats import get_format, verify_all
from signery.pkcs11 import PKCS11URI, PKCS11Signer, export_private_key, generate_key, parse_uri
from signery.trust import TrustSet, trusted_key_from_public
from softhsm import MODULE, PIN, SoftHSM, softhsm_token
from support import VECTORS, require_tool

ALGS = ("ed25519", "ecdsa-p256", "ecdsa-p384", "rsa-3072", "rsa-4096")


@pytest.fixture(scope="module")
def hsm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SoftHSM]:
    yield from softhsm_token(tmp_path_factory)


@pytest.fixture(scope="module")
def generated(hsm: SoftHSM) -> dict[str, keys.PublicKey]:
    return {alg: generate_key(hsm.uri("build", alg), alg) for alg in ALGS}


@pytest.fixture(scope="module")
def signers(hsm: SoftHSM, generated: dict[str, keys.PublicKey]) -> Iterator[dict[str, PKCS11Signer]]:
    out = {alg: PKCS11Signer(hsm.uri("build", alg)) for alg in ALGS}
    yield out
    for s in out.values():
        s.close()


def raw_session(token_label: str, *, rw: bool = False) -> Any:
    """A python-pkcs11 session of our own (PKCS#11 logs the process in once: later logins are refused as such)."""
    import pkcs11

    from signery._internal.pkcs11_token import find_token

    # python-pkcs11's own get_token stops at a slot whose token was removed; signery's lookup passes it over.
    token = find_token(pkcs11.lib(MODULE), parse_uri(f"pkcs11:token={token_label}"))
    try:
        return token.open(rw=rw, user_pin=PIN)
    except pkcs11.UserAlreadyLoggedIn:
        return token.open(rw=rw)


def trust_of(*signers: PKCS11Signer) -> TrustSet:
    return TrustSet(trusted_key_from_public(s.public_key(), name=s.name or "k") for s in signers)


# -- generation and signing ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("alg", ALGS)
def test_generated_key_is_the_signers_key(
    generated: dict[str, keys.PublicKey], signers: dict[str, PKCS11Signer], alg: str
) -> None:
    s = signers[alg]
    assert isinstance(s, keys.Signer)
    assert keys.algorithm_name(generated[alg]) == alg
    assert s.key_id == keys.key_id(generated[alg]) == keys.key_id(s.public_key())
    assert keys.spki_der(s.public_key()) == keys.spki_der(generated[alg])


@pytest.mark.parametrize("alg", ALGS)
def test_generated_private_key_is_sensitive_token_object(hsm: SoftHSM, generated: object, alg: str) -> None:
    import pkcs11
    from pkcs11 import Attribute, ObjectClass

    with raw_session("build") as session:
        key = session.get_key(ObjectClass.PRIVATE_KEY, label=alg)
        assert key[Attribute.TOKEN] and key[Attribute.SENSITIVE] and key[Attribute.ALWAYS_SENSITIVE]
        assert not key[Attribute.EXTRACTABLE] and key[Attribute.NEVER_EXTRACTABLE]
        # The token itself refuses to hand out the private value.
        secret = Attribute.PRIVATE_EXPONENT if alg.startswith("rsa") else Attribute.VALUE
        with pytest.raises(pkcs11.AttributeSensitive):
            key[secret]


@pytest.mark.parametrize("alg", ALGS)
def test_signatures_verify_with_signery(signers: dict[str, PKCS11Signer], alg: str) -> None:
    s = signers[alg]
    pub = s.public_key()
    msg = b"signed in a token " * 7
    keys.verify_signature(pub, s.sign(msg), msg)
    with pytest.raises(SigneryError) as bad:
        keys.verify_signature(pub, s.sign(msg), msg + b"!")
    assert bad.value.reason == Reason.BAD_SIGNATURE
    if alg == "ed25519":
        with pytest.raises(UsageError):
            s.sign_digest(hashlib.sha256(msg).digest(), hash_name="sha256")
        return
    for h in ("sha256", "sha384", "sha512"):
        digest = hashlib.new(h, msg).digest()
        paddings = ("pss", "pkcs1v15") if alg.startswith("rsa") else ("pss",)
        for pad in paddings:
            sig = s.sign_digest(digest, hash_name=h, rsa_padding=pad)  # type: ignore[arg-type]
            keys.verify_signature(pub, sig, digest, hash_name=h, rsa_padding=pad, prehashed=True)  # type: ignore[arg-type]
            keys.verify_signature(pub, s.sign(msg, hash_name=h, rsa_padding=pad), msg, hash_name=h, rsa_padding=pad)  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="digest is 32 bytes"):
        s.sign_digest(b"short", hash_name="sha256")


@pytest.mark.parametrize("alg", ALGS)
def test_signatures_verify_with_openssl(tmp_path: Path, signers: dict[str, PKCS11Signer], alg: str) -> None:
    openssl = require_tool("openssl")
    s = signers[alg]
    pem = tmp_path / "pub.pem"
    pem.write_bytes(keys.public_key_pem(s.public_key()))
    msg = tmp_path / "msg"
    msg.write_bytes(os.urandom(3000))
    sig = tmp_path / "sig"

    def run(*args: str, ok: bool = True) -> None:
        done = subprocess.run([openssl, *args], capture_output=True, text=True)
        said = done.stdout + done.stderr
        if ok:
            assert done.returncode == 0 and ("Verified OK" in said or "Verified Successfully" in said), said
        else:
            assert done.returncode != 0, said

    if alg == "ed25519":
        sig.write_bytes(s.sign(msg.read_bytes()))
        pkeyutl = ("pkeyutl", "-verify", "-pubin", "-inkey", str(pem), "-rawin", "-in", str(msg), "-sigfile", str(sig))
        run(*pkeyutl)
        sig.write_bytes(s.sign(msg.read_bytes() + b"!"))
        run(*pkeyutl, ok=False)
        return
    h = keys.default_hash(s.public_key())
    sig.write_bytes(s.sign(msg.read_bytes()))  # ECDSA DER; RSA-PSS with salt = digest length
    pss = ["-sigopt", "rsa_padding_mode:pss", "-sigopt", "rsa_pss_saltlen:digest"] if alg.startswith("rsa") else []
    run("dgst", f"-{h}", "-verify", str(pem), *pss, "-signature", str(sig), str(msg))
    if alg.startswith("rsa"):
        sig.write_bytes(s.sign(msg.read_bytes(), rsa_padding="pkcs1v15"))
        run("dgst", f"-{h}", "-verify", str(pem), "-signature", str(sig), str(msg))
    sig.write_bytes(s.sign(msg.read_bytes() + b"!"))
    run("dgst", f"-{h}", "-verify", str(pem), *pss, "-signature", str(sig), str(msg), ok=False)


@pytest.mark.parametrize("alg", ALGS)
def test_native_package_signed_in_the_token_verifies(
    tmp_path: Path, signers: dict[str, PKCS11Signer], alg: str
) -> None:
    import zipfile

    pkg = tmp_path / "plugin.zip"
    with zipfile.ZipFile(pkg, "w") as zf:
        zf.writestr("manifest.yaml", "name: demo\nversion: 1.0\n")
        zf.writestr("src/main.py", "print('hi')\n" * 40)
    native = get_format("native")
    out = native.sign(pkg, signers[alg], options=native.options(claims={"name": "demo"}))
    result = verify_all(out, trust=trust_of(signers[alg]))
    assert result.verified, result.to_dict()
    assert [c.key_id for c in result.signatures] == [signers[alg].key_id]
    assert not verify_all(out, trust=TrustSet()).verified


def test_dify_package_signed_in_the_token_verifies(tmp_path: Path, signers: dict[str, PKCS11Signer]) -> None:
    dify = get_format("dify")
    s = signers["rsa-4096"]
    out = dify.sign(VECTORS / "dify" / "dummy_plugin.difypkg", s, output=tmp_path / "signed.difypkg")
    result = verify_all(out, trust=trust_of(s))
    assert result.verified, result.to_dict()
    assert "dify" in {c.format for c in result.signatures}


def test_signer_is_thread_safe_and_reopens_after_close(signers: dict[str, PKCS11Signer]) -> None:
    s = signers["ecdsa-p256"]
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            for j in range(15):
                msg = f"{i}-{j}".encode()
                keys.verify_signature(s.public_key(), s.sign(msg), msg)
        except BaseException as exc:  # collected and re-raised below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    s.close()
    keys.verify_signature(s.public_key(), s.sign(b"again"), b"again")


def test_context_manager_closes_the_session(hsm: SoftHSM, generated: object) -> None:
    with PKCS11Signer(hsm.uri("build", "ed25519")) as s:
        kid = s.key_id
        assert s._session is not None
    assert s._session is None
    assert kid == keys.key_id(s.public_key())


def test_pin_from_pin_source_file_and_from_the_argument(hsm: SoftHSM, generated: object, tmp_path: Path) -> None:
    pin_file = tmp_path / "pin"
    pin_file.write_text(PIN + "\n")
    via_file = PKCS11Signer(f"pkcs11:token=build;object=ed25519?module-path={MODULE}&pin-source=file:{pin_file}")
    via_arg = PKCS11Signer("pkcs11:token=build;object=ed25519", module=MODULE, pin=PIN)
    with via_file, via_arg:
        assert via_file.key_id == via_arg.key_id


# -- refusals ------------------------------------------------------------------------------------------------------


def test_wrong_pin_is_a_config_error_that_does_not_show_the_pin(hsm: SoftHSM) -> None:
    with pytest.raises(ConfigError) as err:
        PKCS11Signer(hsm.uri("spare", "anything", pin="999999")).public_key()
    assert err.value.reason == Reason.CONFIG_ERROR and "wrong PIN" in err.value.message
    assert "999999" not in err.value.message + repr(err.value) + (err.value.subject or "")
    assert "token=spare" in err.value.message


def test_wrong_pin_is_refused_while_the_process_is_logged_in(hsm: SoftHSM, signers: dict[str, PKCS11Signer]) -> None:
    assert signers["ed25519"].key_id  # this process is logged in to "build"
    with pytest.raises(ConfigError, match="wrong PIN") as err:
        PKCS11Signer(hsm.uri("build", "ed25519", pin="4321")).sign(b"x")
    assert "4321" not in err.value.message


def test_missing_pin_is_a_config_error(hsm: SoftHSM) -> None:
    with pytest.raises(ConfigError, match="needs a PIN"):
        PKCS11Signer(hsm.uri("spare", "k", pin=None)).public_key()


def test_missing_object_and_missing_token_are_unknown_keys(hsm: SoftHSM, generated: object) -> None:
    with pytest.raises(NotFoundError) as err:
        PKCS11Signer(hsm.uri("build", "no-such-key")).public_key()
    assert err.value.reason == Reason.UNKNOWN_KEY
    with pytest.raises(NotFoundError) as err:
        PKCS11Signer(hsm.uri("no-such-token", "ed25519")).public_key()
    assert err.value.reason == Reason.UNKNOWN_KEY
    with pytest.raises(NotFoundError):
        PKCS11Signer(hsm.uri("build", "ed25519", extra=";id=%99%98")).public_key()


def test_removed_token_is_an_unknown_key(hsm: SoftHSM) -> None:
    uri = hsm.uri("gone", "doomed")
    generate_key(uri, "ecdsa-p256")
    s = PKCS11Signer(uri)
    keys.verify_signature(s.public_key(), s.sign(b"before"), b"before")
    shutil.rmtree(hsm.token_dir("gone"))
    with pytest.raises(NotFoundError) as err:
        s.sign(b"after")
    assert err.value.reason == Reason.UNKNOWN_KEY
    with pytest.raises(NotFoundError) as err:
        PKCS11Signer(uri).public_key()
    assert err.value.reason == Reason.UNKNOWN_KEY
    s.close()


def test_export_of_a_token_key_is_refused(hsm: SoftHSM, generated: object) -> None:
    for alg in ("ed25519", "rsa-3072"):
        with pytest.raises(UsageError) as err:
            export_private_key(hsm.uri("build", alg))
        assert err.value.reason == Reason.POLICY_VIOLATION
        assert "never leaves the token" in err.value.message and "CKA_SENSITIVE=True" in err.value.message


def test_export_of_a_non_sensitive_key_is_possible(hsm: SoftHSM) -> None:
    from pkcs11 import Attribute, KeyType

    with raw_session("spare", rw=True) as session:
        session.generate_keypair(
            KeyType.RSA,
            2048,
            label="soft",
            store=True,
            public_template={Attribute.PUBLIC_EXPONENT: b"\x01\x00\x01"},
            private_template={Attribute.SENSITIVE: False, Attribute.EXTRACTABLE: True},
        )
    key = export_private_key(hsm.uri("spare", "soft"))
    assert isinstance(key, rsa.RSAPrivateKey)
    assert keys.key_id(key.public_key()) == PKCS11Signer(hsm.uri("spare", "soft")).key_id


def test_generating_over_an_existing_label_is_refused(hsm: SoftHSM, generated: object) -> None:
    with pytest.raises(ConflictError, match="already holds an object labelled"):
        generate_key(hsm.uri("build", "ed25519"), "ed25519")
    for algorithm in ("dsa-1024", "ml-dsa-65"):  # ML-DSA is no PKCS#11 v3.0 mechanism
        with pytest.raises(UsageError, match="a token key is one of"):
            generate_key(hsm.uri("build", "new"), algorithm)
    with pytest.raises(UsageError, match="object="):
        generate_key(f"pkcs11:token=build?module-path={MODULE}&pin-value={PIN}", "ed25519")


def test_a_mechanism_the_token_lacks_is_a_config_error(signers: dict[str, PKCS11Signer]) -> None:
    s = signers["rsa-3072"]
    s.public_key()  # opens the session
    kept = s._mechanisms
    s._mechanisms = kept - {0x0D}  # CKM_RSA_PKCS_PSS
    try:
        with pytest.raises(ConfigError, match="CKM_RSA_PKCS_PSS") as err:
            s.sign(b"x")
        assert err.value.reason == Reason.CONFIG_ERROR
        keys.verify_signature(s.public_key(), s.sign(b"x", rsa_padding="pkcs1v15"), b"x", rsa_padding="pkcs1v15")
    finally:
        s._mechanisms = kept


def test_module_problems_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no PKCS#11 module"):
        PKCS11Signer("pkcs11:token=build;object=k")
    with pytest.raises(ConfigError, match="module-name=softhsm2 is not looked up"):
        PKCS11Signer("pkcs11:token=build;object=k?module-name=softhsm2")
    (tmp_path / "not.so").write_bytes(b"not a library")
    with pytest.raises(ConfigError, match="cannot be loaded"):
        PKCS11Signer("pkcs11:token=build;object=k", module=str(tmp_path / "not.so")).public_key()
    with pytest.raises(ConfigError, match="PIN file"):
        PKCS11Signer(f"pkcs11:token=build;object=k?module-path={MODULE}&pin-source=file:{tmp_path}/absent").public_key()


# -- URIs ------------------------------------------------------------------------------------------------------------


def test_uri_example_parses() -> None:
    u = parse_uri(f"pkcs11:token=build;object=release;id=%01?module-path={MODULE}&pin-source=file:/run/pin")
    assert (u.token, u.object, u.id) == ("build", "release", b"\x01")
    assert (u.module_path, u.pin_source) == (MODULE, "file:/run/pin")
    assert str(u) == f"pkcs11:token=build;object=release;id=%01?module-path={MODULE}&pin-source=file:/run/pin"
    assert parse_uri("pkcs11:") == PKCS11URI()
    assert parse_uri("PKCS11:object=a%20b;slot-id=3").object == "a b"
    assert parse_uri("pkcs11:slot-id=3").slot_id == 3


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("pkcs11:tokn=build", "unknown attribute 'tokn'"),
        ("pkcs11:object=a?token=b", "belongs in the path"),
        ("pkcs11:pin-value=1", "belongs in the query"),
        ("pkcs11:object=a;object=b", "given twice"),
        ("pkcs11:object=a%2", "two hex digits"),
        ("pkcs11:object=a%zz", "two hex digits"),
        ("pkcs11:object", "not name=value"),
        ("pkcs11:type=weird", "unknown object type"),
        ("pkcs11:slot-id=x", "decimal number"),
        ("pkcs11:object=%ff", "not UTF-8"),
        ("pkcs11:object=a#frag", "fragment"),
        ("pkcs11:?pin-value=1&pin-source=file:/p", "not both"),
        ("file:/x", "must start with pkcs11:"),
    ],
)
def test_bad_uris_are_refused_clearly(text: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        parse_uri(text)


def test_pin_never_shows() -> None:
    u = parse_uri("pkcs11:token=t;object=k?pin-value=s3cr3t-PIN")
    assert u.pin_value == "s3cr3t-PIN"
    for text in (str(u), repr(u), f"{u}", repr(PKCS11Signer(u, module=MODULE))):
        assert "s3cr3t" not in text
    assert "pin-value=s3cr3t-PIN" in u.to_string(include_pin=True)
    with pytest.raises(UsageError) as err:
        parse_uri("pkcs11:token=t?pin-value:s3cr3t")
    assert "s3cr3t" not in str(err.value)


text_values = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=0, max_size=20)
uris = st.builds(
    PKCS11URI,
    token=st.none() | text_values,
    manufacturer=st.none() | text_values,
    serial=st.none() | text_values,
    model=st.none() | text_values,
    slot_id=st.none() | st.integers(0, 2**32),
    object=st.none() | text_values,
    type=st.none() | st.sampled_from(["public", "private", "cert", "secret-key", "data"]),
    id=st.none() | st.binary(max_size=20),
    module_path=st.none() | text_values,
    pin_source=st.none() | text_values,
)


@settings(max_examples=300)
@given(u=uris)
def test_uri_round_trips(u: PKCS11URI) -> None:
    text = str(u)
    assert parse_uri(text) == u
    assert str(parse_uri(text)) == text
    assert text.isascii() and " " not in text


@settings(max_examples=200)
@given(u=uris, pin=st.text(min_size=1, max_size=30).filter(lambda p: len(p.strip()) > 3))
def test_uri_pin_round_trips_only_when_asked_and_never_shows(u: PKCS11URI, pin: str) -> None:
    from dataclasses import replace

    with_pin = replace(u, pin_value=pin, pin_source=None)
    full = with_pin.to_string(include_pin=True)
    assert parse_uri(full) == with_pin
    assert parse_uri(str(with_pin)) == with_pin.without_pin()
    assert "pin-value" not in str(with_pin) and "pin-value" not in repr(with_pin)


@settings(max_examples=200)
@given(value=text_values)
def test_any_percent_encoding_decodes(value: str) -> None:
    encoded = "".join(f"%{b:02x}" for b in value.encode())
    assert parse_uri(f"pkcs11:object={encoded}").object == value
    assert parse_uri(f"pkcs11:id={encoded}").id == value.encode()


def test_public_key_types_are_cryptographys(signers: dict[str, PKCS11Signer]) -> None:
    assert isinstance(signers["ed25519"].public_key(), ed25519.Ed25519PublicKey)
    assert isinstance(signers["ecdsa-p384"].public_key(), ec.EllipticCurvePublicKey)
    assert isinstance(signers["rsa-3072"].public_key(), rsa.RSAPublicKey)
