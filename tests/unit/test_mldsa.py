"""ML-DSA-65 (FIPS 204) keys and signatures, and hybrid Ed25519 + ML-DSA-65 envelopes of the native format."""

from __future__ import annotations

import base64
import hashlib
import json
import zipfile
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, mldsa

from signery import hybrid as bundles
from signery import keys
from signery.cli import cli
from signery.errors import MalformedError, Reason, UsageError, VerificationError
from signery.formats import native
from signery.hybrid import HybridSigner
from signery.keys import FileSigner
from signery.trust import (
    TrustedKey,
    TrustSet,
    TrustStore,
    load_trusted_key_file,
    trusted_key_from_bundle,
    trusted_key_from_public,
)

FILES = {"manifest.yaml": b"name: demo\nversion: 1.0\n", "src/main.py": b"print('hi')\n" * 40, "README.md": b"# d\n"}


@pytest.fixture(scope="module")
def pq() -> FileSigner:
    return FileSigner(keys.generate_private_key("ml-dsa-65"), name="pq")


@pytest.fixture(scope="module")
def pair() -> tuple[ed25519.Ed25519PrivateKey, mldsa.MLDSA65PrivateKey]:
    return bundles.generate_hybrid_keys()


@pytest.fixture(scope="module")
def hybrid(pair: tuple[ed25519.Ed25519PrivateKey, mldsa.MLDSA65PrivateKey]) -> HybridSigner:
    ed, ml = pair
    return HybridSigner(FileSigner(ed), FileSigner(ml), name="bundle")


def bundle_trust(hybrid: HybridSigner, *, requires_all: bool = True) -> TrustSet:
    return TrustSet([trusted_key_from_bundle(*hybrid.public_keys(), name="bundle", requires_all=requires_all)])


def make_dir(path: Path) -> Path:
    for name, data in FILES.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_bytes(data)
    return path


def make_zip(path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in FILES.items():
            zf.writestr(name, data, compress_type=zipfile.ZIP_DEFLATED)
    return path


def edit_envelope(sidecar: Path, change: Any) -> None:
    """Apply ``change`` to the first envelope's signature list of a detached document."""
    doc = json.loads(sidecar.read_bytes())
    doc["envelopes"][0]["signatures"] = change(doc["envelopes"][0]["signatures"])
    sidecar.write_text(json.dumps(doc))


# -- keys ------------------------------------------------------------------------------------------------------


def test_ml_dsa_is_an_algorithm_with_pem_round_trips_and_an_spki_key_id(tmp_path: Path, pq: FileSigner) -> None:
    assert "ml-dsa-65" in keys.ALGORITHMS
    key = keys.generate_private_key("ml-dsa-65")
    assert isinstance(key, mldsa.MLDSA65PrivateKey) and keys.algorithm_name(key.public_key()) == "ml-dsa-65"
    paths = keys.save_key_pair(tmp_path / "k.private.pem", tmp_path / "k.public.pem", key, passphrase=b"pw")
    loaded = keys.load_private_key_file(paths.private, passphrase=b"pw")
    public = keys.load_public_key_file(paths.public)
    assert isinstance(loaded, mldsa.MLDSA65PrivateKey) and isinstance(public, mldsa.MLDSA65PublicKey)
    # the key id is SHA-256 over the DER SPKI, here read from the PEM by hand (OpenSSL 3.0 cannot read ML-DSA)
    pem = paths.public.read_text().splitlines()
    der = base64.b64decode("".join(pem[1:-1]))
    assert len(der) == 1974 and der[4:17] == bytes.fromhex("300b0609608648016503040312")  # id-ml-dsa-65
    assert keys.key_id(public) == hashlib.sha256(der).hexdigest() == keys.key_id(loaded.public_key())
    with pytest.raises(UsageError, match="RSA-only"):
        keys.private_key_pem(key, fmt="pkcs1")
    assert "ml-dsa-65" in repr(pq) and "PRIVATE" not in repr(pq)


def test_file_signer_signs_whole_messages_and_refuses_digests(pq: FileSigner) -> None:
    sig = pq.sign(b"statement")
    assert len(sig) == 3309
    keys.verify_signature(pq.public_key(), sig, b"statement")
    pub = pq.public_key()
    assert isinstance(pub, mldsa.MLDSA65PublicKey)
    pub.verify(sig, b"statement", None)  # the empty context string, as cryptography's default
    with pytest.raises(InvalidSignature):
        pub.verify(sig, b"statement", b"signery")
    with pytest.raises(VerificationError) as info:
        keys.verify_signature(pub, sig, b"statement!")
    assert info.value.reason is Reason.BAD_SIGNATURE and info.value.subject == pq.key_id
    bad = bytearray(sig)
    bad[100] ^= 1
    with pytest.raises(VerificationError):
        keys.verify_signature(pub, bytes(bad), b"statement")
    with pytest.raises(VerificationError):
        keys.verify_signature(pub, sig[:-1], b"statement")
    with pytest.raises(UsageError, match="ML-DSA-65 signs whole messages"):
        pq.sign_digest(hashlib.sha256(b"x").digest(), hash_name="sha256")
    with pytest.raises(UsageError, match="prehashed"):
        keys.verify_signature(pub, sig, hashlib.sha256(b"statement").digest(), prehashed=True)


def test_trust_entries_load_ml_dsa_public_keys(tmp_path: Path, pq: FileSigner) -> None:
    (tmp_path / "pq.public.pem").write_bytes(keys.public_key_pem(pq.public_key()))
    entry = load_trusted_key_file(tmp_path / "pq.public.pem", name="pq").key
    assert entry.kind == "pkix" and entry.key_id == pq.key_id
    assert keys.key_id(entry.public_key()) == pq.key_id
    store = TrustStore(tmp_path / "store")
    store.add(entry)
    assert keys.key_id(store.load().resolve("pq").public_key()) == pq.key_id


# -- the native format with ML-DSA-65 keys ---------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["zip", "directory", "file"])
def test_native_round_trip_with_an_ml_dsa_key(tmp_path: Path, pq: FileSigner, kind: str) -> None:
    if kind == "zip":
        subject = make_zip(tmp_path / "p.zip")
    elif kind == "directory":
        subject = make_dir(tmp_path / "pkg")
    else:
        subject = tmp_path / "fw.bin"
        subject.write_bytes(b"\x00firmware" * 100)
    written = native.sign(subject, pq, claims={"name": "demo"})
    target = written if kind == "zip" else subject
    trust = TrustSet([trusted_key_from_public(pq.public_key(), name="pq")])
    result = native.verify(target, trust=trust)
    assert result.verified, result.signatures
    (check,) = result.signatures
    assert check.key_id == pq.key_id and check.key_name == "pq" and check.claims == {"name": "demo"}
    assert native.verify(target, trust=TrustSet()).reason is Reason.UNKNOWN_KEY


def test_ml_dsa_envelope_tampering_is_refused(tmp_path: Path, pq: FileSigner) -> None:
    subject = make_dir(tmp_path / "pkg")
    sidecar = native.sign(subject, pq)
    trust = TrustSet([trusted_key_from_public(pq.public_key(), name="pq")])
    payload = json.loads(sidecar.read_bytes())["envelopes"][0]["payload"]
    assert b"keyIds" not in base64.b64decode(payload)  # a single key's statement is as before
    (subject / "src/main.py").write_bytes(b"evil()\n")
    r = native.verify(subject, trust=trust)
    assert r.reason is Reason.TAMPERED and r.fault == "src/main.py"
    (subject / "src/main.py").write_bytes(FILES["src/main.py"])
    assert native.verify(subject, trust=trust).verified

    def flip(sigs: list[dict[str, str]]) -> list[dict[str, str]]:
        raw = bytearray(base64.b64decode(sigs[0]["sig"]))
        raw[-7] ^= 0x40
        sigs[0]["sig"] = base64.b64encode(bytes(raw)).decode()
        return sigs

    edit_envelope(sidecar, flip)
    r = native.verify(subject, trust=trust)
    assert r.reason is Reason.BAD_SIGNATURE and "ml-dsa-65" in (r.signatures[0].detail or "")


# -- hybrid envelopes --------------------------------------------------------------------------------------------


def test_hybrid_signer_is_one_identity_of_two_keys(hybrid: HybridSigner) -> None:
    ed_pub, ml_pub = hybrid.public_keys()
    spkis = [
        p.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        for p in (ed_pub, ml_pub)
    ]
    assert hybrid.key_id == hashlib.sha256(spkis[0] + spkis[1]).hexdigest()
    assert hybrid.half_key_ids == (keys.key_id(ed_pub), keys.key_id(ml_pub))
    assert hybrid.key_id not in hybrid.half_key_ids
    for refused in (
        lambda: hybrid.sign(b"m"),
        hybrid.public_key,
        lambda: hybrid.sign_digest(b"0" * 32, hash_name="sha256"),
    ):
        with pytest.raises(UsageError, match="only the native format"):
            refused()
    with pytest.raises(MalformedError, match="Ed25519 key and then an ML-DSA-65"):
        HybridSigner(hybrid.halves[1], hybrid.halves[0])
    assert isinstance(hybrid, keys.Signer)


def test_bundle_files_round_trip_and_single_key_loaders_refuse_them(
    tmp_path: Path, pair: tuple[ed25519.Ed25519PrivateKey, mldsa.MLDSA65PrivateKey], hybrid: HybridSigner
) -> None:
    paths = bundles.save_hybrid_key_pair(tmp_path / "b.private.pem", tmp_path / "b.public.pem", *pair, passphrase=b"pw")
    private = paths.private.read_bytes()
    assert private.count(b"-----BEGIN ENCRYPTED PRIVATE KEY-----") == 2
    signer = bundles.load_hybrid_signer(private, passphrase=b"pw", source="b")
    assert signer.key_id == hybrid.key_id
    assert [keys.key_id(k) for k in bundles.load_hybrid_public_keys(paths.public.read_bytes())] == list(
        hybrid.half_key_ids
    )
    with pytest.raises(MalformedError, match="hybrid key bundle"):
        keys.load_private_key(private, passphrase=b"pw")  # cryptography alone would load the Ed25519 half
    with pytest.raises(MalformedError, match="hybrid key bundle"):
        keys.load_public_key(paths.public.read_bytes())
    swapped = keys.public_key_pem(hybrid.public_keys()[1]) + keys.public_key_pem(hybrid.public_keys()[0])
    with pytest.raises(MalformedError, match="then an ML-DSA-65"):
        bundles.load_hybrid_public_keys(swapped)
    # the trust store reads either file as one hybrid entry, requiring both by default
    for path in (paths.public, paths.private):
        entry = load_trusted_key_file(path, name="bundle", passphrase=b"pw").key
        assert entry.kind == "hybrid" and entry.requires_all and entry.key_id == hybrid.key_id
        assert entry.subkey_ids == hybrid.half_key_ids
    store = TrustStore(tmp_path / "store")
    store.add(replace_requires(entry, False))
    (again,) = store.load()
    assert again.kind == "hybrid" and again.requires_all is False
    assert again.settings_differ(entry) == ["both signatures required"]
    trust = store.load()
    assert trust.get(hybrid.half_key_ids[1]) == again and not trust.of_kind("pkix")
    with pytest.raises(UsageError, match="only the native format"):
        again.public_key()


def replace_requires(entry: TrustedKey, requires_all: bool) -> TrustedKey:
    import dataclasses

    return dataclasses.replace(entry, requires_all=requires_all)


def test_hybrid_envelope_verifies_as_one_key(tmp_path: Path, hybrid: HybridSigner) -> None:
    subject = make_zip(tmp_path / "p.zip")
    signed = native.sign(subject, hybrid, claims={"name": "demo"})
    with zipfile.ZipFile(signed) as zf:
        doc = json.loads(zf.read(native.RESERVED_ENTRY))
    (env,) = doc["envelopes"]
    assert [s["keyid"] for s in env["signatures"]] == list(hybrid.half_key_ids)
    assert [len(base64.b64decode(s["sig"])) for s in env["signatures"]] == [64, 3309]
    statement = json.loads(base64.b64decode(env["payload"]))
    assert statement["predicate"]["keyId"] == hybrid.key_id
    assert statement["predicate"]["keyIds"] == list(hybrid.half_key_ids)
    result = native.verify(signed, trust=bundle_trust(hybrid))
    assert result.verified
    (check,) = result.signatures
    assert check.key_id == hybrid.key_id and check.key_name == "bundle" and "both" in (check.detail or "")
    assert not native.verify(signed, trust=bundle_trust(hybrid), threshold=2).verified  # one key, not two
    # a verifier that trusts only one half checks that half on its own
    ml_only = TrustSet([trusted_key_from_public(hybrid.public_keys()[1], name="ml")])
    r = native.verify(signed, trust=ml_only)
    assert r.verified and [s.status for s in r.signatures] == ["unknown-key", "valid"]
    # contents are still compared
    with zipfile.ZipFile(signed, "a") as zf:
        zf.writestr("extra.txt", b"x")
    assert native.verify(signed, trust=bundle_trust(hybrid)).reason is Reason.TAMPERED


def _drop(index: int) -> Any:
    return lambda sigs: [s for i, s in enumerate(sigs) if i != index]


def _swap_sigs(sigs: list[dict[str, str]]) -> list[dict[str, str]]:
    sigs[0]["sig"], sigs[1]["sig"] = sigs[1]["sig"], sigs[0]["sig"]
    return sigs


def _corrupt(index: int) -> Any:
    def change(sigs: list[dict[str, str]]) -> list[dict[str, str]]:
        raw = bytearray(base64.b64decode(sigs[index]["sig"]))
        raw[len(raw) // 2] ^= 1
        sigs[index]["sig"] = base64.b64encode(bytes(raw)).decode()
        return sigs

    return change


@pytest.mark.parametrize(
    ("change", "fault_half", "named"),
    [
        (_drop(1), 1, "ML-DSA-65 signature (keyid"),  # the ML-DSA-65 signature removed
        (_drop(0), 0, "Ed25519 signature (keyid"),  # the Ed25519 one removed
        (_corrupt(1), 1, "ml-dsa-65 signature of hybrid key bundle is invalid"),
        (_corrupt(0), 0, "ed25519 signature of hybrid key bundle is invalid"),
        (_swap_sigs, 0, "ed25519 signature of hybrid key bundle is invalid"),  # sig values swapped between entries
    ],
)
def test_a_bundle_requiring_both_refuses_an_envelope_missing_or_spoiling_one(
    tmp_path: Path, hybrid: HybridSigner, change: Any, fault_half: int, named: str
) -> None:
    subject = make_dir(tmp_path / "pkg")
    sidecar = native.sign(subject, hybrid)
    edit_envelope(sidecar, change)
    result = native.verify(subject, trust=bundle_trust(hybrid))
    assert not result.verified and result.reason is Reason.BAD_SIGNATURE
    (check,) = result.signatures  # the bundle's signatures are one result
    assert check.key_id == hybrid.key_id and named in (check.detail or "")
    assert check.subject == hybrid.half_key_ids[fault_half]
    # the same envelope, when the bundle does not require both: each signature on its own
    alone = native.verify(subject, trust=bundle_trust(hybrid, requires_all=False))
    statuses = [s.status for s in alone.signatures]
    if change in (_swap_sigs,):
        assert statuses == ["bad-signature", "bad-signature"] and not alone.verified
    elif len(statuses) == 1:
        assert statuses == ["valid"] and alone.verified
        assert ("ML-DSA-65" if fault_half == 0 else "Ed25519") in (alone.signatures[0].detail or "")
    else:
        assert sorted(statuses) == ["bad-signature", "valid"] and alone.verified
        assert alone.signatures[fault_half].status == "bad-signature"
    assert {s.key_id for s in alone.signatures} == {hybrid.key_id}


def test_a_half_replaced_by_another_keys_signature_is_missing(tmp_path: Path, hybrid: HybridSigner) -> None:
    subject = make_dir(tmp_path / "pkg")
    sidecar = native.sign(subject, hybrid)
    other = FileSigner(keys.generate_private_key("ml-dsa-65"))
    payload = base64.b64decode(json.loads(sidecar.read_bytes())["envelopes"][0]["payload"])
    forged = other.sign(native.pae(native.PAYLOAD_TYPE, payload))

    def swap_in(sigs: list[dict[str, str]]) -> list[dict[str, str]]:
        return [sigs[0], {"keyid": other.key_id, "sig": base64.b64encode(forged).decode()}]

    edit_envelope(sidecar, swap_in)
    result = native.verify(subject, trust=bundle_trust(hybrid))
    assert result.reason is Reason.BAD_SIGNATURE
    statuses = {s.key_id: s.status for s in result.signatures}
    assert statuses == {hybrid.key_id: "bad-signature", other.key_id: "unknown-key"}
    bundle_check = next(s for s in result.signatures if s.key_id == hybrid.key_id)
    assert "ML-DSA-65 signature" in (bundle_check.detail or "") and "missing" in (bundle_check.detail or "")
    # the other key's signature does not name the statement's signer either, so trusting it does not help it
    r = native.verify(subject, trust=TrustSet([trusted_key_from_public(other.public_key(), name="o")]))
    assert not r.verified


def test_an_envelope_with_a_half_repeated_still_needs_the_other(tmp_path: Path, hybrid: HybridSigner) -> None:
    subject = make_dir(tmp_path / "pkg")
    sidecar = native.sign(subject, hybrid)
    edit_envelope(sidecar, lambda sigs: [sigs[0], sigs[0]])
    result = native.verify(subject, trust=bundle_trust(hybrid))
    assert result.reason is Reason.BAD_SIGNATURE and "ML-DSA-65" in (result.signatures[0].detail or "")
    subject = make_dir(tmp_path / "again")
    sidecar = native.sign(subject, hybrid)
    edit_envelope(sidecar, lambda sigs: [sigs[0], *sigs])  # a duplicate beside both halves is harmless
    result = native.verify(subject, trust=bundle_trust(hybrid))
    assert result.verified and len(result.signatures) == 1


def test_old_signatures_and_a_hybrid_countersignature_live_together(
    tmp_path: Path, hybrid: HybridSigner, pq: FileSigner
) -> None:
    subject = make_zip(tmp_path / "p.zip")
    classic = FileSigner(keys.generate_private_key("ed25519"), name="classic")
    signed = native.sign(subject, classic)
    native.sign(signed, hybrid, in_place=True)
    native.sign(signed, pq, in_place=True)
    trust = bundle_trust(hybrid).union(
        TrustSet([trusted_key_from_public(k.public_key(), name=k.name or "k") for k in (classic, pq)])
    )
    result = native.verify(signed, trust=trust, threshold=3)
    assert result.verified and len(result.signatures) == 3


# -- an independent verifier -------------------------------------------------------------------------------------


def independent_verify(package: Path, sidecar: Path, ed_pem: bytes, ml_pem: bytes) -> None:
    """Verify a hybrid envelope with cryptography's primitives and a hand-written PAE only (no signery code)."""
    ed_pub = serialization.load_pem_public_key(ed_pem)
    ml_pub = serialization.load_pem_public_key(ml_pem)
    assert isinstance(ed_pub, ed25519.Ed25519PublicKey) and isinstance(ml_pub, mldsa.MLDSA65PublicKey)
    verifiers: dict[str, ed25519.Ed25519PublicKey | mldsa.MLDSA65PublicKey] = {}

    def spki(k: Any) -> bytes:
        return k.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)  # type: ignore[no-any-return]

    verifiers[hashlib.sha256(spki(ed_pub)).hexdigest()] = ed_pub
    verifiers[hashlib.sha256(spki(ml_pub)).hexdigest()] = ml_pub
    ids = verifiers
    doc = json.loads(sidecar.read_bytes())
    assert doc["mediaType"] == "application/vnd.signery.signatures.v1+json"
    (env,) = doc["envelopes"]
    ptype = env["payloadType"].encode()
    payload = base64.b64decode(env["payload"], validate=True)
    pae = b"DSSEv1 " + str(len(ptype)).encode() + b" " + ptype + b" " + str(len(payload)).encode() + b" " + payload
    seen = set()
    for entry in env["signatures"]:
        key = ids[entry["keyid"]]
        key.verify(base64.b64decode(entry["sig"], validate=True), pae)  # raises InvalidSignature
        seen.add(entry["keyid"])
    assert seen == set(ids), "both halves must have signed"
    statement = json.loads(payload)
    pred = statement["predicate"]
    assert pred["keyId"] == hashlib.sha256(spki(ed_pub) + spki(ml_pub)).hexdigest()
    assert sorted(pred["keyIds"]) == sorted(ids)
    alg = pred["digestAlgorithm"]
    assert alg == "sha256"
    signed = {s["name"]: s["digest"][alg] for s in statement["subject"]}
    have = {
        p.relative_to(package).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in package.rglob("*")
        if p.is_file()
    }
    assert signed == have


def test_an_independent_verifier_accepts_a_signery_hybrid_envelope(tmp_path: Path, hybrid: HybridSigner) -> None:
    subject = make_dir(tmp_path / "pkg")
    sidecar = native.sign(subject, hybrid, claims={"name": "demo"})
    ed_pem, ml_pem = (keys.public_key_pem(k) for k in hybrid.public_keys())
    independent_verify(subject, sidecar, ed_pem, ml_pem)
    edit_envelope(sidecar, _corrupt(1))
    with pytest.raises(InvalidSignature):
        independent_verify(subject, sidecar, ed_pem, ml_pem)


# -- the CLI -------------------------------------------------------------------------------------------------------


def run(*args: str, code: int = 0) -> str:
    r = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert r.exit_code == code, (args, r.exit_code, r.stdout, r.stderr)
    return r.stdout


def test_cli_keygen_sign_and_verify_with_ml_dsa(
    tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch, hybrid: HybridSigner
) -> None:
    monkeypatch.chdir(tmp_path)
    make_zip(tmp_path / "plugin.zip")
    doc = json.loads(run("keygen", "pq", "--algorithm", "ml-dsa-65", "--json"))
    assert doc["ok"] and doc["algorithm"] == "ml-dsa-65"
    assert isinstance(keys.load_public_key_file(tmp_path / "pq.public.pem"), mldsa.MLDSA65PublicKey)
    run("sign", "plugin.zip", "--key", "pq.private.pem", "--claim", "name=demo")
    out = json.loads(run("verify", "plugin.signed.zip", "--key", "pq.public.pem", "--json"))
    assert out["verified"] is True and out["signatures"][0]["key_id"] == doc["key_id"]
    (tmp_path / "plugin.signed.zip").write_bytes((tmp_path / "plugin.zip").read_bytes())
    out = json.loads(run("verify", "plugin.signed.zip", "--key", "pq.public.pem", "--json", code=1))
    assert out["verified"] is False
    # a bundle's public file given to verify is one hybrid key requiring both signatures
    package = make_dir(tmp_path / "pkg")
    native.sign(package, hybrid)
    (tmp_path / "bundle.public.pem").write_bytes(bundles.hybrid_public_pem(*hybrid.public_keys()))
    out = json.loads(run("verify", str(package), "--key", "bundle.public.pem", "--json"))
    assert out["verified"] is True and [s["key_id"] for s in out["signatures"]] == [hybrid.key_id]
