"""The native format: DSSE/in-toto signatures over zips, files and directories, attacked every way we know."""

from __future__ import annotations

import base64
import io
import json
import os
import random
import shutil
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from signery.archive import ZipArchive
from signery.errors import MalformedError, Reason, SigneryError, UnsafeArchiveError
from signery.formats import native, verify_detected
from signery.keys import FileSigner, generate_private_key
from signery.trust import Constraints, TrustSet, trusted_key_from_public
from support import require_tool

ALGS = ("ed25519", "ecdsa-p256", "ecdsa-p384", "rsa-2048")
DIGESTS = ("sha256", "sha512", "blake3")
ENTRY = native.RESERVED_ENTRY


@pytest.fixture(scope="module")
def signers() -> dict[str, FileSigner]:
    return {alg: FileSigner(generate_private_key(alg), name=alg) for alg in ALGS}


def trust_of(*signers: FileSigner, **kw: object) -> TrustSet:
    return TrustSet(trusted_key_from_public(s.public_key(), name=s.name or "k", **kw) for s in signers)  # type: ignore[arg-type]


FILES = {"manifest.yaml": b"name: demo\nversion: 1.0\n", "src/main.py": b"print('hi')\n" * 50, "README.md": b"# demo\n"}


def make_zip(path: Path, files: dict[str, bytes] = FILES) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for i, (name, data) in enumerate(files.items()):
            zf.writestr(name, data, compress_type=zipfile.ZIP_DEFLATED if i % 2 else zipfile.ZIP_STORED)
    return path


def make_dir(path: Path, files: dict[str, bytes] = FILES) -> Path:
    for name, data in files.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_bytes(data)
    return path


def make_subject(tmp_path: Path, kind: str) -> Path:
    if kind == "zip":
        return make_zip(tmp_path / "plugin.zip")
    if kind == "file":
        (tmp_path / "firmware.bin").write_bytes(os.urandom(5000))
        return tmp_path / "firmware.bin"
    return make_dir(tmp_path / "pkgdir")


def check(path: Path, trust: TrustSet, **kw: object) -> tuple[bool, Reason | None, str | None]:
    r = native.verify(path, trust=trust, **kw)  # type: ignore[arg-type]
    return r.verified, r.reason, r.fault


@pytest.mark.parametrize("kind", ["zip", "file", "directory"])
@pytest.mark.parametrize("digest", DIGESTS)
@pytest.mark.parametrize("alg", ALGS)
def test_sign_and_verify_every_algorithm_digest_and_kind(
    tmp_path: Path, signers: dict[str, FileSigner], alg: str, digest: str, kind: str
) -> None:
    subject = make_subject(tmp_path, kind)
    s = signers[alg]
    written = native.sign(subject, s, digest=digest, claims={"name": "demo", "version": "1.0"})
    target = written if kind == "zip" else subject
    assert written == (tmp_path / "plugin.signed.zip" if kind == "zip" else native.detached_path(subject))
    r = native.verify(target, trust=trust_of(s))
    assert r.verified and r.reason is None, r.to_dict()
    (sig,) = r.signatures
    assert sig.key_id == s.key_id and sig.key_name == alg and sig.claims == {"name": "demo", "version": "1.0"}
    # and through the cross-format entry point
    assert verify_detected(target, trust=trust_of(s)).verified
    # a key that did not sign: unknown-key
    other = FileSigner(generate_private_key("ed25519"), name="other")
    assert check(target, trust_of(other))[:2] == (False, Reason.UNKNOWN_KEY)


def test_signed_zip_keeps_every_original_entry_byte_for_byte(tmp_path: Path, signers: dict[str, FileSigner]) -> None:
    src = make_zip(tmp_path / "p.zip")
    out = native.sign(src, signers["ed25519"])
    with ZipArchive.open(src) as a, ZipArchive.open(out) as b:
        assert [e.name for e in b.entries] == [*(e.name for e in a.entries), ENTRY]
        for ea in a.entries:
            eb = b.get(ea.name)
            assert eb is not None
            assert bytes(a.raw_bytes(ea.header_offset, ea.end_offset)) == bytes(
                b.raw_bytes(eb.header_offset, eb.end_offset)
            )


def test_unsigned_package_is_unsigned(tmp_path: Path, signers: dict[str, FileSigner]) -> None:
    z = make_zip(tmp_path / "p.zip")
    assert check(z, trust_of(signers["ed25519"]))[:2] == (False, Reason.UNSIGNED)
    assert verify_detected(z, trust=trust_of(signers["ed25519"])).reason is Reason.UNSIGNED


def test_countersignature_keeps_the_first_valid(tmp_path: Path, signers: dict[str, FileSigner]) -> None:
    a, b = signers["ed25519"], signers["rsa-2048"]
    signed = native.sign(make_zip(tmp_path / "p.zip"), a, claims={"name": "demo"})
    first_doc = _document(signed)
    assert native.sign(signed, b, in_place=True, digest="blake3") == signed
    doc = _document(signed)
    assert doc["envelopes"][0] == first_doc["envelopes"][0]  # the first envelope is untouched
    r = native.verify(signed, trust=trust_of(a, b), threshold=2)
    assert r.verified and [c.key_id for c in r.signatures] == [a.key_id, b.key_id]
    assert native.verify(signed, trust=trust_of(a)).verified
    assert native.verify(signed, trust=trust_of(b)).verified


def test_threshold_needs_distinct_keys(tmp_path: Path, signers: dict[str, FileSigner]) -> None:
    a, b = signers["ed25519"], signers["ecdsa-p256"]
    once = native.sign(make_zip(tmp_path / "p.zip"), a)
    r = native.verify(once, trust=trust_of(a, b), threshold=2)
    assert not r.verified and r.reason is Reason.POLICY_VIOLATION and "threshold is 2" in r.message
    native.sign(once, a, in_place=True)  # the same key twice is still one key
    r = native.verify(once, trust=trust_of(a, b), threshold=2)
    assert len(r.signatures) == 2 and all(c.valid for c in r.signatures)
    assert not r.verified and r.reason is Reason.POLICY_VIOLATION
    native.sign(once, b, in_place=True)
    assert native.verify(once, trust=trust_of(a, b), threshold=2).verified
    assert not native.verify(once, trust=trust_of(a, b), threshold=3).verified


def _document(path: Path) -> dict:  # type: ignore[type-arg]
    if path.name.endswith(native.DETACHED_SUFFIX):
        return json.loads(path.read_bytes())  # type: ignore[no-any-return]
    with zipfile.ZipFile(path) as zf:
        return json.loads(zf.read(ENTRY))  # type: ignore[no-any-return]


def _replace_entry(path: Path, name: str, data: bytes) -> None:
    """Rewrite ``path`` with entry ``name`` replaced (same order), as an attacker with zipfile would."""
    buf = io.BytesIO()
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(buf, "w") as dst:
        for info in src.infolist():
            dst.writestr(info, data if info.filename == name else src.read(info))
    path.write_bytes(buf.getvalue())


def _edit_document(path: Path, edit: object) -> None:
    doc = _document(path)
    edit(doc)  # type: ignore[operator]
    _replace_entry(path, ENTRY, json.dumps(doc).encode())


def test_flipped_signature_bytes_are_bad_signature(tmp_path: Path, signers: dict[str, FileSigner]) -> None:
    for alg, s in signers.items():
        signed = native.sign(make_zip(tmp_path / f"{alg}.zip"), s)

        def flip(doc: dict) -> None:  # type: ignore[type-arg]
            sig = bytearray(base64.b64decode(doc["envelopes"][0]["signatures"][0]["sig"]))
            sig[len(sig) // 2] ^= 0x01
            doc["envelopes"][0]["signatures"][0]["sig"] = base64.b64encode(bytes(sig)).decode()

        _edit_document(signed, flip)
        assert check(signed, trust_of(s))[:2] == (False, Reason.BAD_SIGNATURE), alg


def test_statement_swapped_from_another_package_is_tampered(tmp_path: Path, signers: dict[str, FileSigner]) -> None:
    s = signers["ed25519"]
    genuine = native.sign(make_zip(tmp_path / "a.zip"), s)
    other = native.sign(make_zip(tmp_path / "b.zip", {**FILES, "src/main.py": b"evil()\n"}), s)
    # The attacker moves a genuine, validly signed envelope onto the other package.
    _replace_entry(other, ENTRY, _zip_entry(genuine, ENTRY))
    ok, reason, fault = check(other, trust_of(s))
    assert (ok, reason, fault) == (False, Reason.TAMPERED, "src/main.py")


def _zip_entry(path: Path, name: str) -> bytes:
    with zipfile.ZipFile(path) as zf:
        return zf.read(name)


def test_statement_naming_another_key_is_bad_signature(tmp_path: Path, signers: dict[str, FileSigner]) -> None:
    s = signers["ed25519"]
    signed = native.sign(make_zip(tmp_path / "a.zip"), s)
    st_ = native.Statement.from_payload(native.Envelope.from_dict(_document(signed)["envelopes"][0]).payload)
    forged = native.Statement(
        subjects=st_.subjects,
        signed_at=st_.signed_at,
        key_id="ab" * 32,
        digest_algorithm=st_.digest_algorithm,
        package_kind=st_.package_kind,
    ).to_payload()
    sig = s.sign(native.pae(native.PAYLOAD_TYPE, forged))
    env = native.Envelope(forged, ((s.key_id, sig),))
    _replace_entry(signed, ENTRY, native.SignatureDocument((env,)).to_bytes())
    assert check(signed, trust_of(s))[:2] == (False, Reason.BAD_SIGNATURE)


def test_revoked_expired_and_constrained_keys(tmp_path: Path, signers: dict[str, FileSigner]) -> None:
    s = signers["ecdsa-p256"]
    signed = native.sign(make_zip(tmp_path / "a.zip"), s, claims={"name": "demo", "category": "community"})
    base = trusted_key_from_public(s.public_key(), name="k")
    revoked = TrustSet([base.__class__(**{**base.__dict__, "revoked": True})])
    assert check(signed, revoked)[:2] == (False, Reason.REVOKED_KEY)
    past = datetime.now(UTC) - timedelta(days=1)
    assert check(signed, trust_of(s, expires=past))[:2] == (False, Reason.EXPIRED_KEY)
    future = datetime.now(UTC) + timedelta(days=1)
    assert check(signed, trust_of(s, expires=future))[0]
    for c in (Constraints(categories=("partner",)), Constraints(names=("acme-*",)), Constraints(formats=("dify",))):
        r = native.verify(signed, trust=trust_of(s, constraints=c))
        assert r.reason is Reason.POLICY_VIOLATION and "k" in r.message
    ok = Constraints(categories=("community",), names=("de*",), formats=("native",))
    assert check(signed, trust_of(s, constraints=ok))[0]


def test_detached_signature_for_a_zip(tmp_path: Path, signers: dict[str, FileSigner]) -> None:
    s = signers["ed25519"]
    z = make_zip(tmp_path / "p.zip")
    before = z.read_bytes()
    sidecar = native.sign(z, s, detached=True)
    assert sidecar == tmp_path / "p.zip.signery.json" and z.read_bytes() == before
    assert native.verify(z, trust=trust_of(s)).verified  # found beside the file by itself
    assert native.verify(z, trust=trust_of(s), signature=sidecar).verified
    _replace_entry(z, "README.md", b"changed\n")
    assert check(z, trust_of(s))[1:] == (Reason.TAMPERED, "README.md")


def test_detached_file_signature_catches_changes(tmp_path: Path, signers: dict[str, FileSigner]) -> None:
    s = signers["ed25519"]
    f = make_subject(tmp_path, "file")
    native.sign(f, s, digest="blake3")
    f.write_bytes(f.read_bytes() + b"\0")
    assert check(f, trust_of(s))[:2] == (False, Reason.TAMPERED)


def test_directory_changes_are_tampered(tmp_path: Path, signers: dict[str, FileSigner]) -> None:
    s = signers["ed25519"]
    d = make_subject(tmp_path, "directory")
    native.sign(d, s)
    (d / "extra.txt").write_bytes(b"x")
    assert check(d, trust_of(s))[1:] == (Reason.TAMPERED, "extra.txt")
    (d / "extra.txt").unlink()
    (d / "src/main.py").unlink()
    assert check(d, trust_of(s))[1:] == (Reason.TAMPERED, "src/main.py")


def test_directory_with_a_symlink_is_refused(tmp_path: Path, signers: dict[str, FileSigner]) -> None:
    d = make_subject(tmp_path, "directory")
    (d / "link").symlink_to("/etc/passwd")
    with pytest.raises(UnsafeArchiveError) as info:
        native.sign(d, signers["ed25519"])
    assert info.value.subject == "link"
    (d / "link").unlink()
    native.sign(d, signers["ed25519"])
    (d / "src" / "link").symlink_to("../README.md")
    with pytest.raises(UnsafeArchiveError):
        native.verify(d, trust=trust_of(signers["ed25519"]))


def test_unsafe_zip_is_refused_when_signing(tmp_path: Path, signers: dict[str, FileSigner]) -> None:
    z = tmp_path / "dup.zip"
    with zipfile.ZipFile(z, "w") as zf, pytest.warns(UserWarning):
        zf.writestr("a.txt", b"1")
        zf.writestr("a.txt", b"2")
    with pytest.raises(UnsafeArchiveError):
        native.sign(z, signers["ed25519"])


# -- independent DSSE verification -------------------------------------------------------------------------------


@pytest.mark.parametrize("alg", ["ed25519", "ecdsa-p256", "rsa-2048"])
def test_envelopes_verify_with_securesystemslib(tmp_path: Path, signers: dict[str, FileSigner], alg: str) -> None:
    from securesystemslib.dsse import Envelope
    from securesystemslib.signer import SSlibKey

    s = signers[alg]
    signed = native.sign(make_zip(tmp_path / "p.zip"), s, claims={"name": "demo"})
    native.sign(signed, signers["ecdsa-p384"], in_place=True)
    sidecar = native.sign(make_subject(tmp_path, "file"), s)
    for path in (signed, sidecar):
        raw = _document(path)["envelopes"][0]
        env = Envelope.from_dict(raw)
        key = SSlibKey.from_crypto(s.public_key(), keyid=s.key_id)
        accepted = env.verify([key], threshold=1)
        assert list(accepted) == [s.key_id]
        statement = json.loads(env.pae()[env.pae().index(b"{") :])
        assert statement["_type"] == native.STATEMENT_TYPE
        assert statement["predicate"]["keyId"] == s.key_id
        # a tampered payload fails the independent verifier too
        env.payload = env.payload.replace(b"demo", b"evil") if b"demo" in env.payload else env.payload + b" "
        with pytest.raises(Exception, match=r"(?i)verif|threshold"):
            env.verify([key], threshold=1)


# -- property tests: any change to a signed zip is refused with the right reason -----------------------------------

BASE_FILES = {f"pkg/f{i}.txt": (b"content %d\n" % i) * (i + 1) for i in range(4)}


@pytest.fixture(scope="module")
def signed_zip(tmp_path_factory: pytest.TempPathFactory, signers: dict[str, FileSigner]) -> bytes:
    d = tmp_path_factory.mktemp("signed")
    return native.sign(make_zip(d / "base.zip", BASE_FILES), signers["ed25519"]).read_bytes()


def _entries(data: bytes) -> list[tuple[str, bytes]]:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return [(i.filename, zf.read(i)) for i in zf.infolist()]


def _rezip(entries: list[tuple[str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in entries:
            zf.writestr(name, data)
    return buf.getvalue()


mutations = st.one_of(
    st.tuples(st.just("content"), st.integers(0, 3), st.binary(min_size=1, max_size=20)),
    st.tuples(st.just("rename"), st.integers(0, 3), st.from_regex(r"pkg/[a-z]{1,6}\.txt", fullmatch=True)),
    st.tuples(st.just("add"), st.integers(0, 4), st.from_regex(r"[a-z]{1,6}/[a-z]{1,6}\.bin", fullmatch=True)),
    st.tuples(st.just("remove"), st.integers(0, 3), st.none()),
    st.tuples(st.just("sigflip"), st.integers(0, 10_000), st.integers(1, 255)),
    st.tuples(st.just("rawflip"), st.integers(0, 10_000), st.integers(1, 255)),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(mutation=mutations, shuffle=st.randoms(use_true_random=False) | st.none())
def test_any_change_to_a_signed_zip_is_refused_with_the_right_reason(
    tmp_path: Path,
    signers: dict[str, FileSigner],
    signed_zip: bytes,
    mutation: tuple[str, object, object],
    shuffle: random.Random | None,
) -> None:
    # Entry order is not signed: whatever order the changed package is re-zipped in, the verdict and the file named
    # are the same.
    kind, a, b = mutation
    trust = trust_of(signers["ed25519"])
    entries = _entries(signed_zip)
    files, sig = entries[:-1], entries[-1]
    assert sig[0] == ENTRY
    expected: set[Reason]
    if kind == "content":
        i, extra = a, b
        files[i] = (files[i][0], files[i][1] + extra)  # type: ignore[operator]
        expected = {Reason.TAMPERED}
        fault = files[i][0]  # type: ignore[index]
    elif kind == "rename":
        i, new = a, b
        if any(n == new for n, _ in files):
            return
        old = files[i][0]  # type: ignore[index]
        files[i] = (new, files[i][1])  # type: ignore[index,assignment]
        expected, fault = {Reason.TAMPERED}, old
    elif kind == "add":
        files.insert(a, (b, b"new"))  # type: ignore[arg-type]
        expected, fault = {Reason.TAMPERED}, b
    elif kind == "remove":
        fault = files.pop(a)[0]  # type: ignore[call-overload]
        expected = {Reason.TAMPERED}
    elif kind == "sigflip":
        doc = json.loads(sig[1])
        raw = bytearray(base64.b64decode(doc["envelopes"][0]["signatures"][0]["sig"]))
        raw[a % len(raw)] ^= b  # type: ignore[operator]
        doc["envelopes"][0]["signatures"][0]["sig"] = base64.b64encode(bytes(raw)).decode()
        sig = (ENTRY, json.dumps(doc).encode())
        expected, fault = {Reason.BAD_SIGNATURE}, None
    else:  # a raw byte flip anywhere in the file
        data = bytearray(signed_zip)
        pos = a % len(data)  # type: ignore[operator]
        data[pos] ^= b  # type: ignore[operator]
        path = tmp_path / "m.zip"
        path.write_bytes(bytes(data))
        try:
            r = native.verify(path, trust=trust)
        except SigneryError as err:
            assert err.reason in (Reason.TAMPERED, Reason.UNSAFE_ARCHIVE, Reason.MALFORMED)
            return
        # a flip in an unused field (a timestamp, an attribute the reader ignores) may leave the contents intact
        if not r.verified:
            assert r.reason in (Reason.TAMPERED, Reason.BAD_SIGNATURE, Reason.MALFORMED, Reason.UNSIGNED)
        else:
            assert _entries(bytes(data)) == _entries(signed_zip)
        return
    path = tmp_path / "m.zip"
    rezipped = [*files, sig]
    if shuffle is not None:
        shuffle.shuffle(rezipped)
    path.write_bytes(_rezip(rezipped))
    r = native.verify(path, trust=trust)
    assert not r.verified and r.reason in expected, (mutation, r.to_dict())
    if fault is not None:
        assert r.fault == fault


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    digest=st.sampled_from(DIGESTS), claims=st.dictionaries(st.sampled_from(["name", "version"]), st.text(max_size=8))
)
def test_countersignature_never_invalidates_the_first(
    tmp_path: Path, signers: dict[str, FileSigner], signed_zip: bytes, digest: str, claims: dict[str, str]
) -> None:
    path = tmp_path / "c.zip"
    path.write_bytes(signed_zip)
    native.sign(path, signers["ecdsa-p256"], in_place=True, digest=digest, claims=claims)
    r = native.verify(path, trust=trust_of(signers["ed25519"], signers["ecdsa-p256"]), threshold=2)
    assert r.verified and all(c.valid for c in r.signatures)


def test_inspect_shows_envelopes_without_judging(tmp_path: Path, signers: dict[str, FileSigner]) -> None:
    signed = native.sign(make_zip(tmp_path / "p.zip"), signers["ed25519"], claims={"name": "demo"})
    info = native.inspect(signed)
    assert info["package_kind"] == "zip" and len(info["envelopes"]) == 1
    assert info["envelopes"][0]["payloadType"] == native.PAYLOAD_TYPE
    assert info["signatures"][0]["claims"] == {"name": "demo"}
    assert info["signatures"][0]["key_id"] == signers["ed25519"].key_id


def test_copy_of_signed_directory_elsewhere_still_verifies(tmp_path: Path, signers: dict[str, FileSigner]) -> None:
    d = make_subject(tmp_path, "directory")
    sidecar = native.sign(d, signers["ed25519"])
    other = tmp_path / "copy"
    shutil.copytree(d, other)
    assert native.verify(other, trust=trust_of(signers["ed25519"]), signature=sidecar).verified


# -- verification by reconstruction: the subject array is compared as bytes, and parsed only when it differs ------


def _resign(path: Path, s: FileSigner, payload: bytes) -> None:
    sig = s.sign(native.pae(native.PAYLOAD_TYPE, payload))
    env = native.Envelope(payload, ((s.key_id, sig),))
    _replace_entry(path, ENTRY, native.SignatureDocument((env,)).to_bytes())


def _payload_of(path: Path) -> bytes:
    return native.Envelope.from_dict(_document(path)["envelopes"][0]).payload


def test_a_statement_in_another_json_layout_still_verifies(tmp_path: Path, signers: dict[str, FileSigner]) -> None:
    # Another implementation may write the same statement with other key order and whitespace: it is parsed whole.
    s = signers["ed25519"]
    signed = native.sign(make_zip(tmp_path / "a.zip"), s)
    doc = json.loads(_payload_of(signed))
    for layout in (json.dumps(doc, indent=2).encode(), json.dumps(dict(reversed(doc.items()))).encode()):
        assert native._split_payload(layout) is None
        _resign(signed, s, layout)
        assert check(signed, trust_of(s)) == (True, None, None)
    doc["subject"][1]["digest"]["sha256"] = "00" * 32
    _resign(signed, s, json.dumps(doc, indent=2).encode())
    assert check(signed, trust_of(s))[:2] == (False, Reason.TAMPERED)


def test_non_ascii_names_verify_and_names_that_need_json_escapes_are_refused(
    tmp_path: Path, signers: dict[str, FileSigner]
) -> None:
    s = signers["ed25519"]
    files = {"caf\u00e9/\u00fcber.txt": b"1", "plain.txt": b"2"}
    signed = native.sign(make_zip(tmp_path / "q.zip", files), s)
    assert "caf\u00e9/\u00fcber.txt".encode() in _payload_of(signed)  # canonical JSON: UTF-8, not \u escapes
    assert check(signed, trust_of(s)) == (True, None, None)
    _replace_entry(signed, "caf\u00e9/\u00fcber.txt", b"changed")
    assert check(signed, trust_of(s)) == (False, Reason.TAMPERED, "caf\u00e9/\u00fcber.txt")
    # '"' and '\\' are invalid names on Windows, controls everywhere: no name that needs a JSON escape is signed.
    with pytest.raises(UnsafeArchiveError):
        native.sign(make_zip(tmp_path / "e.zip", {'say "hi".txt': b"1"}), s)


def test_a_broken_subject_array_is_malformed(tmp_path: Path, signers: dict[str, FileSigner]) -> None:
    # The head parses, the array does not: the package is hashed, the bytes differ, the full parse says why.
    s = signers["ed25519"]
    signed = native.sign(make_zip(tmp_path / "a.zip"), s)
    payload = _payload_of(signed)
    head, body = native._split_payload(payload)  # type: ignore[misc]
    _resign(signed, s, head + body + b",{]}")
    assert check(signed, trust_of(s))[:2] == (False, Reason.MALFORMED)


def test_the_last_subject_key_decides_as_in_a_full_parse(tmp_path: Path, signers: dict[str, FileSigner]) -> None:
    # A duplicate "subject" member earlier in the object cannot smuggle other contents past the byte comparison.
    s = signers["ed25519"]
    signed = native.sign(make_zip(tmp_path / "a.zip"), s)
    payload = _payload_of(signed)
    head, body = native._split_payload(payload)  # type: ignore[misc]
    evil = head.replace(b'{"_type"', b'{"subject":[{"digest":{"sha256":"00"},"name":"x"}],"_type"', 1)
    _resign(signed, s, evil + body + b"]}")
    assert check(signed, trust_of(s)) == (True, None, None)  # json.loads keeps the last member: the real subjects
    doc = json.loads(evil + body + b"]}")
    assert [x["name"] for x in doc["subject"]] == sorted(FILES, key=str.encode)


def test_a_nested_subject_member_is_parsed_whole(tmp_path: Path, signers: dict[str, FileSigner]) -> None:
    # The last ',"subject":[' of this valid statement belongs to an extra member of the last subject: the split
    # head does not parse, so the whole payload is parsed, as any JSON reader would.
    s = signers["ed25519"]
    signed = native.sign(make_zip(tmp_path / "a.zip"), s)
    doc = json.loads(_payload_of(signed))
    doc["subject"][-1]["x"] = {"q": 1, "subject": []}
    payload = json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()
    assert native._split_payload(payload) is not None
    _resign(signed, s, payload)
    assert check(signed, trust_of(s)) == (True, None, None)


# -- re-zip safety: the files are signed (name -> digest), not their order in the archive or their compression -----

# Neither archive order, nor code-unit (UTF-16) order, nor case-folded order is the canonical one here.
ODD_NAMES = ["src/main.py", "Z.txt", "a/b.txt", "a.b.txt", "a-b.txt", "a0.txt", "\u00e9.txt", "\U0001f600.txt"]
ODD_NAMES += ["\uff61.txt", "README.md"]


def _subject_names(path: Path) -> list[str]:
    return [s["name"] for s in json.loads(_payload_of(path))["subject"]]


def _archive_files(path: Path) -> list[str]:
    with ZipArchive.open(path) as a:
        return [e.name for e in a.files if e.name != ENTRY]


def _rezip_reversed(path: Path, out: Path, edit: dict[str, bytes | None] | None = None) -> Path:
    """Re-zip ``path`` with Python's zipfile in reverse entry order, every entry recompressed (stored <-> deflated):
    what another archiver does. ``edit`` replaces entries (``None`` drops one; a new name is added)."""
    edit = dict(edit or {})
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(out, "w") as dst:
        for info in reversed(src.infolist()):
            data = edit.pop(info.filename, src.read(info))
            flipped = zipfile.ZIP_STORED if info.compress_type == zipfile.ZIP_DEFLATED else zipfile.ZIP_DEFLATED
            if data is not None:
                dst.writestr(info.filename, data, compress_type=flipped)
        for name, data in edit.items():
            assert data is not None
            dst.writestr(name, data, compress_type=zipfile.ZIP_DEFLATED)
    return out


@pytest.mark.parametrize("kind", ["zip", "directory"])
def test_subjects_are_written_sorted_by_the_utf8_bytes_of_their_names(
    tmp_path: Path, signers: dict[str, FileSigner], kind: str
) -> None:
    s = signers["ed25519"]
    files = {name: name.encode() * 3 for name in ODD_NAMES}
    subject = make_zip(tmp_path / "odd.zip", files) if kind == "zip" else make_dir(tmp_path / "odd", files)
    written = native.sign(subject, s)
    canonical = sorted(ODD_NAMES, key=str.encode)
    assert _subject_names(written) == canonical
    assert canonical[:4] == ["README.md", "Z.txt", "a-b.txt", "a.b.txt"]  # bytes: '-' < '.' < '/' < '0' < 'a'
    assert canonical[-3:] == ["\u00e9.txt", "\uff61.txt", "\U0001f600.txt"]  # code points, not UTF-16 units
    assert canonical != sorted(ODD_NAMES, key=lambda n: n.encode("utf-16-be"))
    assert native.canonical_order([(n, 0) for n in ODD_NAMES]) == [(n, 0) for n in canonical]
    if kind == "zip":
        assert _archive_files(written) == ODD_NAMES  # the archive itself keeps its order
        # What signing writes is what verification reconstructs first, byte for byte (the fast path).
        with ZipArchive.open(written) as z:
            have = z.hex_digests("sha256", exclude=(ENTRY,))
        split = native._split_payload(_payload_of(written))
        assert split is not None and split[1] == native._subjects_json(native.canonical_order(have), "sha256")
    assert check(written if kind == "zip" else subject, trust_of(s)) == (True, None, None)


@pytest.mark.parametrize("digest", ["sha256", "blake3"])
def test_a_package_rezipped_in_reverse_with_every_entry_recompressed_verifies(
    tmp_path: Path, signers: dict[str, FileSigner], digest: str
) -> None:
    a, b = signers["ed25519"], signers["ecdsa-p256"]
    files = {**FILES, **{n: n.encode() for n in ODD_NAMES}}
    signed = native.sign(make_zip(tmp_path / "p.zip", files), a, digest=digest)
    native.sign(signed, b, in_place=True, digest="sha512")  # two algorithms: the package is listed once for both
    out = _rezip_reversed(signed, tmp_path / "rezipped.zip")
    with zipfile.ZipFile(signed) as before, zipfile.ZipFile(out) as after:
        old, new = before.infolist(), after.infolist()
        assert [i.filename for i in new] == [i.filename for i in reversed(old)]  # the signatures are first now
        assert all(x.compress_type != y.compress_type for x, y in zip(reversed(old), new, strict=True))
    assert check(out, trust_of(a, b), threshold=2) == (True, None, None)
    # The same with the signature beside the package.
    sidecar = native.sign(make_zip(tmp_path / "d.zip"), a, detached=True, digest=digest)
    out = _rezip_reversed(tmp_path / "d.zip", tmp_path / "d2.zip")
    assert check(out, trust_of(a), signature=sidecar) == (True, None, None)


@pytest.mark.parametrize("level", ["-mx0", "-mx9"])
def test_a_package_rezipped_by_7zip_verifies(tmp_path: Path, signers: dict[str, FileSigner], level: str) -> None:
    import subprocess

    require_tool("7z")

    s = signers["ed25519"]
    signed = native.sign(make_zip(tmp_path / "p.zip", {**FILES, **{n: n.encode() * 9 for n in ODD_NAMES}}), s)
    tree = tmp_path / "tree"
    with zipfile.ZipFile(signed) as zf:
        zf.extractall(tree)
        names = zf.namelist()
    # The files named in reverse, and the whole tree in 7-Zip's own order with directory entries.
    tree_zip = tmp_path / "tree.zip"
    subprocess.run(["7z", "a", "-tzip", level, "-bd", "-bso0", str(tree_zip), "*"], cwd=tree, check=True)
    with ZipArchive.open(tree_zip) as z:
        assert {"src/", "a/", ".signery/"} <= {e.name for e in z.entries if e.is_dir}
    assert check(tree_zip, trust_of(s)) == (True, None, None)
    out = tmp_path / "7z.zip"
    subprocess.run(["7z", "a", "-tzip", level, "-bd", "-bso0", str(out), *reversed(names)], cwd=tree, check=True)
    assert _archive_files(out) != _archive_files(signed)
    assert check(out, trust_of(s)) == (True, None, None)
    (tree / "a/b.txt").write_bytes(b"changed")
    subprocess.run(["7z", "u", "-tzip", level, "-bd", "-bso0", str(out), "a/b.txt"], cwd=tree, check=True)
    assert check(out, trust_of(s)) == (False, Reason.TAMPERED, "a/b.txt")


@pytest.mark.parametrize(
    ("edit", "fault"),
    [
        ({"src/main.py": b"evil()\n"}, "src/main.py"),
        ({"README.md": None}, "README.md"),
        ({"src/extra.py": b"evil()\n"}, "src/extra.py"),
        ({"manifest.yaml": None, "manifest.yml": FILES["manifest.yaml"]}, "manifest.yaml"),  # a rename: the signed one
    ],
)
def test_a_rezipped_package_with_a_changed_removed_or_added_file_names_it(
    tmp_path: Path, signers: dict[str, FileSigner], edit: dict[str, bytes | None], fault: str
) -> None:
    s = signers["ed25519"]
    signed = native.sign(make_zip(tmp_path / "p.zip"), s)
    out = _rezip_reversed(signed, tmp_path / "r.zip", edit)
    ok, reason, name = check(out, trust_of(s))
    assert (ok, reason, name) == (False, Reason.TAMPERED, fault)


def _statement_in_order(path: Path, order: list[str]) -> bytes:
    """The payload of ``path``'s signature with its subjects listed in ``order`` (canonical JSON otherwise)."""
    st_ = native.Statement.from_payload(_payload_of(path))
    by_name = {x.name: x for x in st_.subjects}
    return native.Statement(
        subjects=tuple(by_name[n] for n in order),
        signed_at=st_.signed_at,
        key_id=st_.key_id,
        digest_algorithm=st_.digest_algorithm,
        package_kind=st_.package_kind,
        claims=st_.claims,
    ).to_payload()


def test_a_signature_made_before_subjects_were_sorted_still_verifies(
    tmp_path: Path, signers: dict[str, FileSigner]
) -> None:
    # signery used to list a ZIP's subjects in central-directory order: such a statement is still a signature.
    a, b = signers["ed25519"], signers["ecdsa-p384"]
    signed = native.sign(make_zip(tmp_path / "old.zip"), a)
    order = _archive_files(signed)
    assert order == list(FILES) and order != sorted(order, key=str.encode)
    old = _statement_in_order(signed, order)
    assert [x["name"] for x in json.loads(old)["subject"]] == order
    _resign(signed, a, old)
    assert check(signed, trust_of(a)) == (True, None, None)
    # Its subject array is the one the archive order gives, byte for byte: the fast path verifies it unparsed.
    split = native._split_payload(old)
    assert split is not None
    with ZipArchive.open(signed) as z:
        have = z.hex_digests("sha256", exclude=(ENTRY,))
    assert split[1] == native._subjects_json(have, "sha256")
    assert split[1] != native._subjects_json(native.canonical_order(have), "sha256")
    # A new signature beside it: both verify.
    native.sign(signed, b, in_place=True)
    assert _subject_names(signed) == order  # the first envelope is the old one, untouched
    assert check(signed, trust_of(a, b), threshold=2) == (True, None, None)
    # Re-zipped, it verifies too (as a mapping); a change is still named.
    out = _rezip_reversed(signed, tmp_path / "r.zip")
    assert check(out, trust_of(a, b), threshold=2) == (True, None, None)
    _replace_entry(signed, "README.md", b"changed\n")
    r = native.verify(signed, trust=trust_of(a, b))
    assert (r.reason, r.fault) == (Reason.TAMPERED, "README.md")
    assert all(c.reason is Reason.TAMPERED and c.subject == "README.md" for c in r.signatures)


def test_subjects_in_any_other_order_verify_as_a_mapping(tmp_path: Path, signers: dict[str, FileSigner]) -> None:
    # Another implementation may list the subjects in an order of its own: neither byte comparison matches, the
    # array is parsed and compared as a mapping.
    s = signers["ed25519"]
    files = {n: n.encode() for n in ODD_NAMES}
    signed = native.sign(make_zip(tmp_path / "p.zip", files), s)
    shuffled = ODD_NAMES[1::2] + ODD_NAMES[::2]
    assert shuffled not in (ODD_NAMES, sorted(ODD_NAMES, key=str.encode))
    _resign(signed, s, _statement_in_order(signed, shuffled))
    assert _subject_names(signed) == shuffled
    assert check(signed, trust_of(s)) == (True, None, None)
    _replace_entry(signed, "\U0001f600.txt", b"changed")
    assert check(signed, trust_of(s)) == (False, Reason.TAMPERED, "\U0001f600.txt")


def test_a_subject_listed_twice_is_malformed(tmp_path: Path, signers: dict[str, FileSigner]) -> None:
    s = signers["ed25519"]
    signed = native.sign(make_zip(tmp_path / "p.zip"), s)
    st_ = native.Statement.from_payload(_payload_of(signed))
    for extra in (st_.subjects[0], native.Subject(st_.subjects[0].name, {"sha256": "00" * 32})):
        dup = native.Statement(
            subjects=(*st_.subjects, extra),
            signed_at=st_.signed_at,
            key_id=st_.key_id,
            digest_algorithm=st_.digest_algorithm,
            package_kind=st_.package_kind,
        ).to_payload()
        with pytest.raises(MalformedError, match="listed twice"):
            native.Statement.from_payload(dup)
        for layout in (dup, json.dumps(json.loads(dup), indent=2).encode()):  # verified unparsed first, or parsed
            _resign(signed, s, layout)
            ok, reason, _ = check(signed, trust_of(s))
            assert (ok, reason) == (False, Reason.MALFORMED)
            assert "listed twice" in native.verify(signed, trust=trust_of(s)).signatures[0].detail


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    order=st.permutations(range(len(BASE_FILES) + 1)),
    methods=st.lists(st.sampled_from([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED]), min_size=5, max_size=5),
)
def test_any_permutation_of_a_signed_zip_verifies(
    tmp_path: Path, signers: dict[str, FileSigner], signed_zip: bytes, order: list[int], methods: list[int]
) -> None:
    entries = _entries(signed_zip)  # the files, then the signature entry: it may move anywhere too
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for i, method in zip(order, methods, strict=True):
            zf.writestr(entries[i][0], entries[i][1], compress_type=method)
    path = tmp_path / "perm.zip"
    path.write_bytes(buf.getvalue())
    assert check(path, trust_of(signers["ed25519"])) == (True, None, None)
