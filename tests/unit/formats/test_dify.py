"""Dify .difypkg signatures: the real vectors, and byte compatibility both ways with an independent implementation.

``IndependentDify`` below is written from ../shared/vectors/README.md only (zipfile + cryptography, no signery
code), the way the daemon's Go signer and verifier work: a new ZIP with every entry copied in order (Deflate),
``.verification.dify.json`` appended, M = sha256(entry)... || decimal(time), RSASSA-PKCS1-v1_5/SHA-256 over M, the
signature in the ZIP comment as compact JSON with sorted keys.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
import shutil
import zipfile
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from signery.errors import MalformedError, Reason, UsageError
from signery.formats import detect_formats, dify, verify_detected
from signery.keys import FileSigner, generate_private_key, key_id, load_public_key
from signery.trust import Constraints, TrustSet, load_trusted_key_file, trusted_key_from_public
from support import WINDOWS_DEVICES

AGENT = "langgenius-agent_0.0.14.difypkg"
COMMENT_RE = re.compile(rb'\{"signature":"[A-Za-z0-9+/]+={0,2}","time":[0-9]+\}')


class IndependentDify:
    """Dify's algorithm from its description, sharing no code with signery."""

    @staticmethod
    def message(zf: zipfile.ZipFile, when: int) -> bytes:
        return b"".join(hashlib.sha256(zf.read(i)).digest() for i in zf.infolist()) + str(when).encode()

    @classmethod
    def sign(
        cls, src: Path, dst: Path, key: rsa.RSAPrivateKey, *, category: str | None = "langgenius", when: int
    ) -> Path:
        """``category=None`` signs without a verification entry, as the daemon's signer did before PR #311."""
        with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zout:
            for info in zin.infolist():
                zout.writestr(info.filename, zin.read(info))
            if category is not None:
                zout.writestr(".verification.dify.json", json.dumps({"authorized_category": category}).replace(" ", ""))
        with zipfile.ZipFile(dst) as zf:
            sig = key.sign(cls.message(zf, when), padding.PKCS1v15(), hashes.SHA256())
        comment = json.dumps({"signature": base64.b64encode(sig).decode(), "time": when}, separators=(",", ":"))
        with zipfile.ZipFile(dst, "a") as zf:
            zf.comment = comment.encode()
        return dst

    @classmethod
    def verify(cls, path: Path, keys: Sequence[rsa.RSAPublicKey]) -> bool:
        with zipfile.ZipFile(path) as zf:
            doc = json.loads(zf.comment)
            msg = cls.message(zf, int(doc["time"]))
        sig = base64.b64decode(doc["signature"])
        for k in keys:
            try:
                k.verify(sig, msg, padding.PKCS1v15(), hashes.SHA256())
                return True
            except InvalidSignature:
                continue
        return False


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    key = generate_private_key("rsa-4096")  # what `dify signature generate` makes
    assert isinstance(key, rsa.RSAPrivateKey)
    return key


@pytest.fixture(scope="module")
def other_key() -> rsa.RSAPrivateKey:
    key = generate_private_key("rsa-2048")
    assert isinstance(key, rsa.RSAPrivateKey)
    return key


@pytest.fixture()
def dify_vectors(vectors: Path) -> Path:
    return vectors / "dify"


def trust_of(*keys: rsa.RSAPrivateKey, constraints: Constraints | None = None) -> TrustSet:
    return TrustSet(
        trusted_key_from_public(k.public_key(), name=f"k{i}", constraints=constraints) for i, k in enumerate(keys)
    )


def rezip(src: Path, dst: Path, *, change: dict[str, bytes] | None = None, comment: bytes | None = None) -> Path:
    """Copy a ZIP with some entries' contents replaced (names and order kept), and the comment kept or replaced."""
    change = change or {}
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            zout.writestr(info.filename, change.get(info.filename, zin.read(info)))
        zout.comment = zin.comment if comment is None else comment
    return dst


# -- the real vectors ----------------------------------------------------------------------------------------------


def test_official_vector_verifies_with_the_shipped_key(dify_vectors: Path) -> None:
    shipped = load_public_key(dify.official_key_pem())
    assert key_id(shipped) == key_id(load_public_key((dify_vectors / "official-public-key.pem").read_bytes()))
    result = dify.verify(dify_vectors / AGENT, trust=dify.official_trust())
    assert result.verified, result.to_dict()
    check = result.signatures[0]
    assert check.key_name == "dify-marketplace"
    assert check.signed_at == datetime.fromtimestamp(1744632035, UTC)
    assert check.claims["category"] == "langgenius" and check.claims["category_stated"] is False
    assert check.claims["name"] == "langgenius/agent" and check.claims["version"] == "0.0.14"
    assert IndependentDify.verify(dify_vectors / AGENT, [shipped])


def test_detection_finds_dify_only_where_it_is(dify_vectors: Path) -> None:
    assert dify.detect(dify_vectors / AGENT)
    assert not dify.detect(dify_vectors / "openai.difypkg")
    assert not dify.detect(dify_vectors / "dummy_plugin.difypkg")
    assert "dify" in detect_formats(dify_vectors / AGENT)
    combined = verify_detected(dify_vectors / AGENT, trust=dify.official_trust())
    assert combined.verified


@pytest.mark.parametrize("name", ["openai.difypkg", "dummy_plugin.difypkg"])
def test_unsigned_vectors_are_unsigned(dify_vectors: Path, name: str) -> None:
    result = dify.verify(dify_vectors / name, trust=dify.official_trust())
    assert not result.verified and result.reason is Reason.UNSIGNED and result.signatures == ()
    assert dify.inspect(dify_vectors / name)["signed"] is False


def test_inspect_reports_the_signature(dify_vectors: Path) -> None:
    info = dify.inspect(dify_vectors / AGENT)
    assert info["signed"] and info["time"] == 1744632035 and info["entries"] == 16
    assert info["category"] == "langgenius" and not info["verification_entry"]
    assert info["plugin"] == {"author": "langgenius", "name": "agent", "version": "0.0.14"}


# -- byte compatibility, both directions --------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["dummy_plugin.difypkg", "openai.difypkg", AGENT])
def test_signery_signature_verifies_independently(
    dify_vectors: Path, tmp_path: Path, rsa_key: rsa.RSAPrivateKey, name: str
) -> None:
    out = dify.sign(dify_vectors / name, FileSigner(rsa_key), output=tmp_path / "out.difypkg", category="partner")
    assert IndependentDify.verify(out, [rsa_key.public_key()])
    with zipfile.ZipFile(out) as zf:
        assert COMMENT_RE.fullmatch(zf.comment), zf.comment
        infos = zf.infolist()
        assert infos[-1].filename == ".verification.dify.json"
        assert zf.read(infos[-1]) == b'{"authorized_category":"partner"}'
        with zipfile.ZipFile(dify_vectors / name) as original:
            kept = [i for i in original.infolist() if i.filename != ".verification.dify.json"]
            assert [i.filename for i in infos[:-1]] == [i.filename for i in kept]
            assert all(zf.read(i.filename) == original.read(i) for i in kept)
    assert dify.verify(out, trust=trust_of(rsa_key)).verified


def test_default_output_name_and_category(dify_vectors: Path, tmp_path: Path, rsa_key: rsa.RSAPrivateKey) -> None:
    pkg = shutil.copy(dify_vectors / "dummy_plugin.difypkg", tmp_path / "dummy_plugin.difypkg")
    out = dify.sign(Path(pkg), FileSigner(rsa_key))
    assert out == tmp_path / "dummy_plugin.signed.difypkg"
    assert dify.inspect(out)["category"] == "langgenius"


def test_independent_signature_verifies_in_signery(
    dify_vectors: Path, tmp_path: Path, rsa_key: rsa.RSAPrivateKey
) -> None:
    out = IndependentDify.sign(
        dify_vectors / "dummy_plugin.difypkg", tmp_path / "d.difypkg", rsa_key, category="community", when=1750000000
    )
    result = dify.verify(out, trust=trust_of(rsa_key))
    assert result.verified, result.to_dict()
    assert result.signatures[0].claims["category"] == "community"
    assert result.signatures[0].signed_at == datetime.fromtimestamp(1750000000, UTC)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    files=st.dictionaries(
        st.from_regex(r"[a-z]{1,8}(/[a-z]{1,8}){0,2}\.(py|yaml|txt)", fullmatch=True).filter(
            lambda n: not any(part.split(".")[0].upper() in WINDOWS_DEVICES for part in n.split("/"))
        ),
        st.binary(max_size=300),
        min_size=1,
        max_size=6,
    ),
    when=st.integers(min_value=0, max_value=4_000_000_000),
)
def test_random_packages_agree_both_ways(
    tmp_path: Path, other_key: rsa.RSAPrivateKey, files: dict[str, bytes], when: int
) -> None:
    names = sorted(files)
    if any(b.startswith(a + "/") for a in names for b in names):
        return  # a file and a directory of the same name: the strict reader refuses such archives on purpose
    src = tmp_path / "src.difypkg"
    with zipfile.ZipFile(src, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    now = datetime.fromtimestamp(when, UTC)
    ours = dify.sign(src, FileSigner(other_key), output=tmp_path / "ours.difypkg", now=now)
    assert IndependentDify.verify(ours, [other_key.public_key()])
    theirs = IndependentDify.sign(src, tmp_path / "theirs.difypkg", other_key, when=when)
    assert dify.verify(theirs, trust=trust_of(other_key)).verified


# -- keys in every PEM form -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("form", "encoding"),
    [
        ("pkcs1", serialization.PublicFormat.PKCS1),
        ("spki", serialization.PublicFormat.SubjectPublicKeyInfo),
        ("pkcs8-private", None),
    ],
)
@pytest.mark.parametrize("trailer", [b"", b"\n", b"\n\n  \t\r\n"])
def test_key_forms_with_trailing_whitespace(
    dify_vectors: Path,
    tmp_path: Path,
    rsa_key: rsa.RSAPrivateKey,
    form: str,
    encoding: serialization.PublicFormat | None,
    trailer: bytes,
) -> None:
    signed = tmp_path / "signed.difypkg"
    if not signed.exists():
        dify.sign(dify_vectors / "dummy_plugin.difypkg", FileSigner(rsa_key), output=signed)
    if encoding is None:
        pem = rsa_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    else:
        pem = rsa_key.public_key().public_bytes(serialization.Encoding.PEM, encoding)
    keyfile = tmp_path / f"{form}.pem"
    keyfile.write_bytes(pem + trailer)
    loaded = load_trusted_key_file(keyfile)
    assert dify.verify(signed, trust=TrustSet([loaded.key])).verified
    assert loaded.dropped_secret == (encoding is None)


# -- re-signing -----------------------------------------------------------------------------------------------------


def test_resigning_replaces_the_verification_entry(
    dify_vectors: Path, tmp_path: Path, rsa_key: rsa.RSAPrivateKey, other_key: rsa.RSAPrivateKey
) -> None:
    first = dify.sign(dify_vectors / "dummy_plugin.difypkg", FileSigner(rsa_key), output=tmp_path / "a.difypkg")
    second = dify.sign(first, FileSigner(other_key), output=tmp_path / "b.difypkg", category="community")
    with zipfile.ZipFile(second) as zf:
        names = [i.filename for i in zf.infolist()]
        assert names.count(".verification.dify.json") == 1 and names[-1] == ".verification.dify.json"
        assert zf.read(".verification.dify.json") == b'{"authorized_category":"community"}'
    assert IndependentDify.verify(second, [other_key.public_key()])
    assert not IndependentDify.verify(second, [rsa_key.public_key()])
    result = dify.verify(second, trust=trust_of(other_key))
    assert result.verified and result.signatures[0].claims["category"] == "community"


def test_resigning_in_place(dify_vectors: Path, tmp_path: Path, rsa_key: rsa.RSAPrivateKey) -> None:
    pkg = Path(shutil.copy(dify_vectors / AGENT, tmp_path / "agent.difypkg"))
    dify.sign(pkg, FileSigner(rsa_key), output=pkg, category="partner")
    assert dify.verify(pkg, trust=trust_of(rsa_key)).verified
    assert dify.verify(pkg, trust=dify.official_trust()).reason is Reason.UNKNOWN_KEY


def test_directory_entries_are_dropped(tmp_path: Path, other_key: rsa.RSAPrivateKey) -> None:
    src = tmp_path / "dirs.difypkg"
    with zipfile.ZipFile(src, "w") as zf:
        zf.writestr("tools/", b"")
        zf.writestr("tools/a.py", b"print(1)\n")
        zf.writestr("manifest.yaml", b"name: x\nauthor: y\nversion: 1.0.0\n")
    out = dify.sign(src, FileSigner(other_key), output=tmp_path / "out.difypkg")
    with zipfile.ZipFile(out) as zf:
        assert [i.filename for i in zf.infolist()] == ["tools/a.py", "manifest.yaml", ".verification.dify.json"]
    assert IndependentDify.verify(out, [other_key.public_key()])


def test_sign_refuses_bad_category_and_non_rsa_keys(
    dify_vectors: Path, tmp_path: Path, rsa_key: rsa.RSAPrivateKey
) -> None:
    pkg = dify_vectors / "dummy_plugin.difypkg"
    with pytest.raises(UsageError, match="category"):
        dify.sign(pkg, FileSigner(rsa_key), output=tmp_path / "x.difypkg", category="LangGenius")
    with pytest.raises(UsageError, match="not RSA"):
        dify.sign(pkg, FileSigner(generate_private_key("ed25519")), output=tmp_path / "x.difypkg")
    assert not (tmp_path / "x.difypkg").exists()


# -- refusals, each with its own reason ------------------------------------------------------------------------------


@pytest.fixture()
def signed_dummy(dify_vectors: Path, tmp_path: Path, rsa_key: rsa.RSAPrivateKey) -> Path:
    return dify.sign(dify_vectors / "dummy_plugin.difypkg", FileSigner(rsa_key), output=tmp_path / "s.difypkg")


def test_tampering_any_entry_is_refused(signed_dummy: Path, tmp_path: Path, rsa_key: rsa.RSAPrivateKey) -> None:
    with zipfile.ZipFile(signed_dummy) as zf:
        names = [i.filename for i in zf.infolist()]
    for i, name in enumerate(names):
        bad = rezip(signed_dummy, tmp_path / f"t{i}.difypkg", change={name: b"# changed\n"})
        result = dify.verify(bad, trust=trust_of(rsa_key))
        assert result.reason is Reason.TAMPERED, (name, result.to_dict())
        assert result.signatures[0].key_id == key_id(rsa_key.public_key())
        assert not IndependentDify.verify(bad, [rsa_key.public_key()])


def test_changed_time_is_tampering(signed_dummy: Path, tmp_path: Path, rsa_key: rsa.RSAPrivateKey) -> None:
    with zipfile.ZipFile(signed_dummy) as zf:
        doc = json.loads(zf.comment)
    doc["time"] += 1
    bad = rezip(signed_dummy, tmp_path / "t.difypkg", comment=json.dumps(doc, separators=(",", ":")).encode())
    assert dify.verify(bad, trust=trust_of(rsa_key)).reason is Reason.TAMPERED


def test_unknown_key_names_the_keys_tried(signed_dummy: Path, other_key: rsa.RSAPrivateKey) -> None:
    result = dify.verify(signed_dummy, trust=trust_of(other_key).union(dify.official_trust()))
    assert result.reason is Reason.UNKNOWN_KEY
    assert "dify-marketplace" in result.message and "k0" in result.message
    outcomes = [c["outcome"] for c in result.signatures[0].claims["candidates"]]
    assert outcomes == ["not-this-key", "not-this-key"]
    assert dify.verify(signed_dummy, trust=TrustSet()).reason is Reason.UNKNOWN_KEY


def test_key_constraints_bind_the_category(dify_vectors: Path, tmp_path: Path, rsa_key: rsa.RSAPrivateKey) -> None:
    signer = FileSigner(rsa_key)
    partner_only = trust_of(rsa_key, constraints=Constraints(categories=("partner",)))
    claims_lg = dify.sign(dify_vectors / "dummy_plugin.difypkg", signer, output=tmp_path / "lg.difypkg")
    result = dify.verify(claims_lg, trust=partner_only)
    assert result.reason is Reason.POLICY_VIOLATION and "langgenius" in result.message
    ok = dify.sign(dify_vectors / "dummy_plugin.difypkg", signer, output=tmp_path / "p.difypkg", category="partner")
    assert dify.verify(ok, trust=partner_only).verified
    # No verification entry means the daemon's implicit "langgenius": a partner-only key may not claim it either.
    implicit = IndependentDify.sign(
        dify_vectors / "dummy_plugin.difypkg", tmp_path / "i.difypkg", rsa_key, category=None, when=1
    )
    result = dify.verify(implicit, trust=partner_only)
    assert result.reason is Reason.POLICY_VIOLATION
    assert result.signatures[0].claims["category_stated"] is False
    by_name = trust_of(rsa_key, constraints=Constraints(names=("acme/*",)))
    assert dify.verify(ok, trust=by_name).reason is Reason.POLICY_VIOLATION
    assert dify.verify(ok, trust=trust_of(rsa_key, constraints=Constraints(names=("test/*",)))).verified


def test_revoked_and_expired_keys(signed_dummy: Path, rsa_key: rsa.RSAPrivateKey) -> None:
    from dataclasses import replace

    entry = trusted_key_from_public(rsa_key.public_key(), name="me")
    revoked = TrustSet([replace(entry, revoked=True)])
    assert dify.verify(signed_dummy, trust=revoked).reason is Reason.REVOKED_KEY
    expired = TrustSet([replace(entry, expires=datetime.now(UTC) - timedelta(days=1))])
    assert dify.verify(signed_dummy, trust=expired).reason is Reason.EXPIRED_KEY
    past = datetime.now(UTC) - timedelta(days=2)
    assert dify.verify(signed_dummy, trust=expired, now=past).verified


def test_threshold_counts_distinct_keys(signed_dummy: Path, rsa_key: rsa.RSAPrivateKey) -> None:
    result = dify.verify(signed_dummy, trust=trust_of(rsa_key), threshold=2)
    assert not result.verified and result.reason is Reason.POLICY_VIOLATION


@pytest.mark.parametrize(
    "comment",
    [
        b'{"signature":"not base64!","time":1}',
        b'{"signature":"AAAA","time":"1"}',
        b'{"signature":"","time":1}',
        b'{"signature":"AAAA","time":true}',
    ],
)
def test_broken_signature_comment_is_malformed(signed_dummy: Path, tmp_path: Path, comment: bytes) -> None:
    bad = rezip(signed_dummy, tmp_path / "m.difypkg", comment=comment)
    assert dify.detect(bad)
    with pytest.raises(MalformedError):
        dify.verify(bad, trust=TrustSet())


def test_garbage_signature_is_unknown_not_a_crash(
    signed_dummy: Path, tmp_path: Path, rsa_key: rsa.RSAPrivateKey
) -> None:
    comment = json.dumps({"signature": base64.b64encode(b"\x01" * 512).decode(), "time": 5}, separators=(",", ":"))
    bad = rezip(signed_dummy, tmp_path / "g.difypkg", comment=comment.encode())
    assert dify.verify(bad, trust=trust_of(rsa_key)).reason is Reason.UNKNOWN_KEY


def test_non_signature_comment_is_unsigned(dify_vectors: Path, tmp_path: Path) -> None:
    pkg = rezip(dify_vectors / "dummy_plugin.difypkg", tmp_path / "c.difypkg", comment=b"built by zip 3.0")
    assert not dify.detect(pkg)
    assert dify.verify(pkg, trust=dify.official_trust()).reason is Reason.UNSIGNED


def test_comment_bytes_match_go_json(rsa_key: rsa.RSAPrivateKey) -> None:
    sig = b"\xfb\xff" * 256  # base64 with '+' and '/', which Go's encoder does not escape
    assert dify.format_comment(sig, 1744632035) == (b'{"signature":"' + base64.b64encode(sig) + b'","time":1744632035}')
    assert dify.verification_entry("partner") == b'{"authorized_category":"partner"}'
    assert dify.parse_comment(io.BytesIO(dify.format_comment(sig, 7)).read(), source="x") == dify.DifySignature(sig, 7)


def test_progress_counts_every_file_once(tmp_path: Path, other_key: rsa.RSAPrivateKey) -> None:
    src = tmp_path / "p.difypkg"
    with zipfile.ZipFile(src, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("manifest.yaml", "author: a\nname: p\nversion: 0.0.1\n")
        zf.writestr("dir/", b"")
        for i in range(40):
            zf.writestr(f"dir/m{i}.py", f"print({i})\n" * i)
    seen: list[int] = []
    out = dify.sign(src, FileSigner(other_key), progress=seen.append)
    with zipfile.ZipFile(src) as zf:
        assert sum(seen) == sum(i.compress_size for i in zf.infolist() if not i.is_dir())
    seen.clear()
    assert dify.verify(out, trust=trust_of(other_key), progress=seen.append).verified
    with zipfile.ZipFile(out) as zf:  # the verification entry is covered too
        assert sum(seen) == sum(i.compress_size for i in zf.infolist() if not i.is_dir())
