"""Signing and verifying component versions: the compat vector, round trips, references, and attacks."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from ocm_helpers import BLOB, BLOB_REF, make_archive, make_descriptor

from signery.errors import MalformedError, Reason, UnsafeArchiveError, UsageError
from signery.keys import FileSigner, generate_private_key, load_private_key_file, load_public_key_file
from signery.ocm import (
    open_component_version,
    sign_component_version,
    verify_component_version,
    write_transport_archive,
)
from signery.ocm.signing import MEDIA_ED25519, MEDIA_RSA, MEDIA_RSA_PSS


def _descriptor_yaml(path: Path) -> dict[str, Any]:
    return yaml.safe_load((path / "component-descriptor.yaml").read_text())


def _edit(path: Path, fn: Any) -> None:
    doc = _descriptor_yaml(path)
    fn(doc)
    (path / "component-descriptor.yaml").write_text(yaml.safe_dump(doc))


@pytest.fixture()
def compat(vectors: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "compat"
    shutil.copytree(vectors / "ocm/compat-archive/component-archive", dst)
    for p in [dst, *dst.rglob("*")]:
        p.chmod(0o755 if p.is_dir() else 0o644)
    return dst


def test_compat_archive_test_signature_verifies_with_rsa_pub(vectors: Path, compat: Path) -> None:
    cv, _ = open_component_version(compat)
    blob = (compat / "blobs").iterdir().__next__().read_bytes()
    assert hashlib.sha256(blob).hexdigest() == cv.descriptor.resources[0]["digest"]["value"]
    pub = load_public_key_file(vectors / "ocm/compat-archive/rsa.pub")
    result = verify_component_version(cv, signature="test", public_key=pub)
    assert result.verified, result.message
    assert result.signatures[0].claims["normalisation"] == "jsonNormalisation/v1"


def test_compat_archive_blob_tampering_is_named(vectors: Path, compat: Path) -> None:
    next((compat / "blobs").iterdir()).write_bytes(b"this is evil data")
    cv, _ = open_component_version(compat)
    result = verify_component_version(
        cv, signature="test", public_key=load_public_key_file(vectors / "ocm/compat-archive/rsa.pub")
    )
    assert result.reason is Reason.TAMPERED and result.fault == "resource text"


@pytest.mark.parametrize(
    ("algorithm", "key_type", "media"),
    [
        ("RSASSA-PKCS1-V1_5", "rsa-2048", MEDIA_RSA),
        ("RSASSA-PSS", "rsa-2048", MEDIA_RSA_PSS),
        ("ed25519", "ed25519", MEDIA_ED25519),
    ],
)
@pytest.mark.parametrize("hash_alg", ["sha256", "sha512"])
def test_round_trip_every_algorithm(
    tmp_path: Path, rsa_key: Any, algorithm: str, key_type: str, media: str, hash_alg: Any
) -> None:
    key = rsa_key if key_type.startswith("rsa") else generate_private_key(key_type)
    path = make_archive(tmp_path / "ca")
    cv, _ = open_component_version(path)
    entry = sign_component_version(cv, FileSigner(key), name="acme", algorithm=algorithm, hash_alg=hash_alg)
    assert entry["signature"]["mediaType"] == media
    assert entry["digest"]["hashAlgorithm"] == {"sha256": "SHA-256", "sha512": "SHA-512"}[hash_alg]
    written = _descriptor_yaml(path)["component"]["resources"][0]["digest"]
    assert written["normalisationAlgorithm"] == "genericBlobDigest/v1"
    assert written["value"] == hashlib.new(hash_alg, BLOB).hexdigest()
    cv, _ = open_component_version(path)
    assert verify_component_version(cv, signature="acme", public_key=key.public_key()).verified


@pytest.mark.parametrize(
    "normalisation", ["jsonNormalisation/v1", "jsonNormalisation/v2", "jsonNormalisation/v4alpha1"]
)
def test_round_trip_every_normalisation(tmp_path: Path, rsa_key: Any, normalisation: str) -> None:
    path = make_archive(tmp_path / "ca")
    cv, _ = open_component_version(path)
    sign_component_version(cv, FileSigner(rsa_key), name="n", normalisation=normalisation)
    cv, _ = open_component_version(path)
    assert verify_component_version(cv, signature="n", public_key=rsa_key.public_key()).verified


def test_wrong_key_is_bad_signature(tmp_path: Path, rsa_key: Any, other_rsa_key: Any) -> None:
    cv, _ = open_component_version(make_archive(tmp_path / "ca"))
    sign_component_version(cv, FileSigner(rsa_key), name="acme")
    result = verify_component_version(cv, signature="acme", public_key=other_rsa_key.public_key())
    assert result.reason is Reason.BAD_SIGNATURE


def test_changed_descriptor_field_is_tampered(tmp_path: Path, rsa_key: Any) -> None:
    path = make_archive(tmp_path / "ca")
    cv, _ = open_component_version(path)
    sign_component_version(cv, FileSigner(rsa_key), name="acme")
    _edit(path, lambda d: d["component"].update(provider="mallory"))
    cv, _ = open_component_version(path)
    result = verify_component_version(cv, signature="acme", public_key=rsa_key.public_key())
    assert result.reason is Reason.TAMPERED and result.fault == "component descriptor"


def test_changed_recorded_digest_and_signature_value(tmp_path: Path, rsa_key: Any) -> None:
    path = make_archive(tmp_path / "ca")
    cv, _ = open_component_version(path)
    sign_component_version(cv, FileSigner(rsa_key), name="acme")

    def flip(d: dict[str, Any]) -> None:
        sig = d["signatures"][0]["signature"]
        sig["value"] = ("0" if sig["value"][0] != "0" else "1") + sig["value"][1:]

    _edit(path, flip)
    cv, _ = open_component_version(path)
    assert (
        verify_component_version(cv, signature="acme", public_key=rsa_key.public_key()).reason is Reason.BAD_SIGNATURE
    )


def test_unsigned_name_and_unchanged_irrelevant_fields(tmp_path: Path, rsa_key: Any) -> None:
    path = make_archive(tmp_path / "ca")
    cv, _ = open_component_version(path)
    sign_component_version(cv, FileSigner(rsa_key), name="acme")
    _edit(path, lambda d: d["component"].update(repositoryContexts=[{"type": "OCIRegistry", "baseUrl": "x"}]))
    cv, _ = open_component_version(path)
    assert verify_component_version(cv, signature="acme", public_key=rsa_key.public_key()).verified
    assert verify_component_version(cv, signature="nope", public_key=rsa_key.public_key()).reason is Reason.UNSIGNED


def test_named_signatures_coexist_and_resigning_replaces_only_one(
    tmp_path: Path, rsa_key: Any, other_rsa_key: Any
) -> None:
    path = make_archive(tmp_path / "ca")
    cv, _ = open_component_version(path)
    sign_component_version(cv, FileSigner(rsa_key), name="a")
    sign_component_version(cv, FileSigner(other_rsa_key), name="b", algorithm="RSASSA-PSS")
    first_b = _descriptor_yaml(path)["signatures"][1]
    sign_component_version(cv, FileSigner(other_rsa_key), name="a")
    sigs = _descriptor_yaml(path)["signatures"]
    assert [s["name"] for s in sigs] == ["a", "b"] and sigs[1] == first_b
    cv, _ = open_component_version(path)
    assert verify_component_version(cv, signature="a", public_key=other_rsa_key.public_key()).verified
    assert verify_component_version(cv, signature="b", public_key=other_rsa_key.public_key()).verified


def test_tar_archive_round_trip_and_blob_tamper(tmp_path: Path, rsa_key: Any) -> None:
    path = make_archive(tmp_path / "ca.tar", tar=True)
    cv, _ = open_component_version(path)
    sign_component_version(cv, FileSigner(rsa_key), name="acme")
    cv, _ = open_component_version(path)
    assert verify_component_version(cv, signature="acme", public_key=rsa_key.public_key()).verified
    # rebuild the tar with another blob under the same name
    desc = cv.descriptor
    from signery.ocm import write_component_archive

    write_component_archive(path, desc, {BLOB_REF: b"other"}, tar=True)
    cv, _ = open_component_version(path)
    assert verify_component_version(cv, signature="acme", public_key=rsa_key.public_key()).reason is Reason.TAMPERED


def test_tar_with_traversal_is_refused(tmp_path: Path) -> None:
    import io
    import tarfile

    path = tmp_path / "evil.tar"
    with tarfile.open(path, "w") as tf:
        for name in ("component-descriptor.yaml", "../escape"):
            info = tarfile.TarInfo(name)
            info.size = 1
            tf.addfile(info, io.BytesIO(b"x"))
    with pytest.raises(UnsafeArchiveError):
        open_component_version(path)


def test_missing_blob_is_malformed_naming_it(tmp_path: Path, rsa_key: Any) -> None:
    path = make_archive(tmp_path / "ca")
    for blob in (path / "blobs").iterdir():
        blob.unlink()
    cv, _ = open_component_version(path)
    with pytest.raises(MalformedError) as exc:
        sign_component_version(cv, FileSigner(rsa_key), name="acme")
    assert exc.value.subject == BLOB_REF


def test_blob_reference_cannot_escape(tmp_path: Path, rsa_key: Any) -> None:
    path = make_archive(tmp_path / "ca")
    _edit(path, lambda d: d["component"]["resources"][0]["access"].update(localReference="../../etc/passwd"))
    cv, _ = open_component_version(path)
    with pytest.raises(UnsafeArchiveError):
        sign_component_version(cv, FileSigner(rsa_key), name="acme")


def test_unknown_hash_and_normalisation_in_signature_are_named(tmp_path: Path, rsa_key: Any) -> None:
    path = make_archive(tmp_path / "ca")
    cv, _ = open_component_version(path)
    sign_component_version(cv, FileSigner(rsa_key), name="acme")
    for field, value in (("hashAlgorithm", "MD5"), ("normalisationAlgorithm", "jsonNormalisation/v9")):
        _edit(path, lambda d, f=field, v=value: d["signatures"][0]["digest"].update({f: v}))
        cv, _ = open_component_version(path)
        with pytest.raises(MalformedError) as exc:
            verify_component_version(cv, signature="acme", public_key=rsa_key.public_key())
        assert exc.value.subject == f"signatures[acme].digest.{field}"
        sign_component_version(cv, FileSigner(rsa_key), name="acme")


def test_media_type_and_algorithm_must_agree(tmp_path: Path, rsa_key: Any) -> None:
    path = make_archive(tmp_path / "ca")
    cv, _ = open_component_version(path)
    sign_component_version(cv, FileSigner(rsa_key), name="acme", algorithm="RSASSA-PSS")
    _edit(path, lambda d: d["signatures"][0]["signature"].update(mediaType=MEDIA_RSA))
    cv, _ = open_component_version(path)
    with pytest.raises(MalformedError):
        verify_component_version(cv, signature="acme", public_key=rsa_key.public_key())


def test_external_resource_without_digest_cannot_be_signed(tmp_path: Path, rsa_key: Any) -> None:
    res = {
        "name": "img",
        "version": "1",
        "type": "ociImage",
        "relation": "external",
        "access": {"type": "ociArtifact", "imageReference": "ghcr.io/x:1"},
    }
    path = make_archive(tmp_path / "ca")
    _edit(path, lambda d: d["component"]["resources"].append(res))
    cv, _ = open_component_version(path)
    with pytest.raises(UsageError) as exc:
        sign_component_version(cv, FileSigner(rsa_key), name="acme")
    assert exc.value.subject == "resource img"


# --- references resolved from a common transport archive ---


def _ctf(tmp_path: Path) -> Path:
    leaf = make_descriptor(name="acme.org/lib", version="2.0.0")
    mid = make_descriptor(
        name="acme.org/svc",
        version="1.1.0",
        componentReferences=[{"name": "lib", "componentName": "acme.org/lib", "version": "2.0.0"}],
    )
    app = make_descriptor(
        componentReferences=[{"name": "svc", "componentName": "acme.org/svc", "version": "1.1.0"}],
    )
    return write_transport_archive(
        tmp_path / "ctf", [(leaf, {BLOB_REF: BLOB}), (mid, {BLOB_REF: BLOB}), (app, {BLOB_REF: BLOB})]
    )


def test_ctf_references_are_digested_recursively(tmp_path: Path, rsa_key: Any) -> None:
    ctf = _ctf(tmp_path)
    cv, repo = open_component_version(ctf, component="acme.org/app:1.0.0")
    entry = sign_component_version(cv, FileSigner(rsa_key), name="acme", repository=repo)
    ref_digest = cv.descriptor.references[0]["digest"]
    assert ref_digest["normalisationAlgorithm"] == "jsonNormalisation/v3" and entry["digest"]["value"]
    cv, repo = open_component_version(ctf, component="acme.org/app")
    assert verify_component_version(cv, signature="acme", repository=repo, public_key=rsa_key.public_key()).verified


def test_tampered_nested_reference_is_named(tmp_path: Path, rsa_key: Any) -> None:
    ctf = _ctf(tmp_path)
    cv, repo = open_component_version(ctf, component="acme.org/app:1.0.0")
    sign_component_version(cv, FileSigner(rsa_key), name="acme", repository=repo)
    lib, _ = open_component_version(ctf, component="acme.org/lib:2.0.0")
    lib.descriptor.raw["component"]["provider"] = "mallory"
    lib.save()
    cv, repo = open_component_version(ctf, component="acme.org/app:1.0.0")
    result = verify_component_version(cv, signature="acme", repository=repo, public_key=rsa_key.public_key())
    assert result.reason is Reason.TAMPERED
    assert result.fault == "reference svc"  # the direct reference whose closure changed


def test_missing_reference_is_a_clear_error(tmp_path: Path, rsa_key: Any) -> None:
    path = make_archive(
        tmp_path / "ca", componentReferences=[{"name": "x", "componentName": "acme.org/x", "version": "1"}]
    )
    cv, _ = open_component_version(path)
    with pytest.raises(UsageError) as exc:
        sign_component_version(cv, FileSigner(rsa_key), name="acme")
    assert exc.value.subject == "reference x"


def test_ctf_needs_component_when_ambiguous(tmp_path: Path) -> None:
    with pytest.raises(UsageError) as exc:
        open_component_version(_ctf(tmp_path))
    assert exc.value.subject == "--component"


def test_compat_private_key_signs_like_ocm(vectors: Path, compat: Path) -> None:
    """Signing the compat digest the legacy way yields OCM's recorded signature (PKCS#1 v1.5 is deterministic)."""
    cv, _ = open_component_version(compat)
    recorded = cv.descriptor.signature("test")
    assert recorded is not None
    signer = FileSigner(load_private_key_file(vectors / "ocm/compat-archive/rsa.priv"))
    raw = signer.sign_digest(bytes.fromhex(recorded["digest"]["value"]), hash_name="sha256", rsa_padding="pkcs1v15")
    assert raw.hex() == recorded["signature"]["value"]
