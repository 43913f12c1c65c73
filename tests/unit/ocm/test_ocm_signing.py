"""Signing and verifying component versions through the OCM format: the compat vector, round trips, references,
and attacks. Every verification is against a trust set, as `signery verify` does it."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from ocm_helpers import BLOB, BLOB_REF, make_archive, make_descriptor, ocm_sign, ocm_verify, trust_of

from signery.errors import MalformedError, Reason, UnsafeArchiveError, UsageError
from signery.formats.ocm import FORMAT
from signery.keys import FileSigner, generate_private_key, load_private_key_file, load_public_key_file
from signery.ocm import open_component_version, write_transport_archive
from signery.ocm.signing import MEDIA_ED25519, MEDIA_RSA, MEDIA_RSA_PSS


def _descriptor_yaml(path: Path) -> dict[str, Any]:
    return yaml.safe_load((path / "component-descriptor.yaml").read_text())


def _edit(path: Path, fn: Any) -> None:
    doc = _descriptor_yaml(path)
    fn(doc)
    (path / "component-descriptor.yaml").write_text(yaml.safe_dump(doc))


def _only(result: Any) -> Any:
    assert len(result.signatures) == 1, result.signatures
    return result.signatures[0]


@pytest.fixture()
def compat(vectors: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "compat"
    shutil.copytree(vectors / "ocm/compat-archive/component-archive", dst)
    for p in [dst, *dst.rglob("*")]:
        p.chmod(0o755 if p.is_dir() else 0o644)
    return dst


@pytest.fixture()
def compat_key(vectors: Path) -> Any:
    return load_public_key_file(vectors / "ocm/compat-archive/rsa.pub")


def test_compat_archive_test_signature_verifies_with_rsa_pub(compat: Path, compat_key: Any) -> None:
    cv, _ = open_component_version(compat)
    blob = (compat / "blobs").iterdir().__next__().read_bytes()
    assert hashlib.sha256(blob).hexdigest() == cv.descriptor.resources[0]["digest"]["value"]
    result = ocm_verify(compat, trust_of(compat_key))
    assert result.verified, result.message
    check = _only(result)
    assert check.format == "ocm" and check.key_name == "k0"
    assert check.claims["normalisation"] == "jsonNormalisation/v1" and check.claims["signature"] == "test"
    assert check.claims["component"] == "github.com/mandelsoft/test:1.0.0"


def test_compat_archive_blob_tampering_is_named(compat: Path, compat_key: Any) -> None:
    next((compat / "blobs").iterdir()).write_bytes(b"this is evil data")
    result = ocm_verify(compat, trust_of(compat_key))
    assert result.reason is Reason.TAMPERED and result.fault == "resource text"


def test_compat_archive_with_an_untrusted_key_is_unknown_key(compat: Path, rsa_key: Any) -> None:
    result = ocm_verify(compat, trust_of(rsa_key))
    assert result.reason is Reason.UNKNOWN_KEY and "k0" in result.message
    assert ocm_verify(compat, trust_of()).reason is Reason.UNKNOWN_KEY


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
    entry = ocm_sign(path, key, signature_name="acme", algorithm=algorithm, hash_algorithm=hash_alg)
    assert entry["signature"]["mediaType"] == media
    assert entry["digest"]["hashAlgorithm"] == {"sha256": "SHA-256", "sha512": "SHA-512"}[hash_alg]
    written = _descriptor_yaml(path)["component"]["resources"][0]["digest"]
    assert written["normalisationAlgorithm"] == "genericBlobDigest/v1"
    assert written["value"] == hashlib.new(hash_alg, BLOB).hexdigest()
    assert ocm_verify(path, trust_of(key)).verified


def test_ed25519_key_defaults_to_ed25519_and_refuses_pss(tmp_path: Path) -> None:
    key = generate_private_key("ed25519")
    path = make_archive(tmp_path / "ca")
    assert ocm_sign(path, key)["signature"]["mediaType"] == MEDIA_ED25519  # the default algorithm, no RSA key
    with pytest.raises(UsageError) as exc:
        ocm_sign(path, key, algorithm="RSASSA-PSS")
    assert exc.value.subject == "--algorithm"
    with pytest.raises(UsageError) as exc:
        ocm_sign(path, generate_private_key("ecdsa-p256"))
    assert exc.value.subject == "--key"


@pytest.mark.parametrize(
    "normalisation", ["jsonNormalisation/v1", "jsonNormalisation/v2", "jsonNormalisation/v4alpha1"]
)
def test_round_trip_every_normalisation(tmp_path: Path, rsa_key: Any, normalisation: str) -> None:
    path = make_archive(tmp_path / "ca")
    ocm_sign(path, rsa_key, signature_name="n", normalisation=normalisation)
    assert ocm_verify(path, trust_of(rsa_key)).verified


def test_wrong_key_is_unknown_key(tmp_path: Path, rsa_key: Any, other_rsa_key: Any) -> None:
    path = make_archive(tmp_path / "ca")
    ocm_sign(path, rsa_key, signature_name="acme")
    check = _only(ocm_verify(path, trust_of(other_rsa_key)))
    assert check.reason is Reason.UNKNOWN_KEY and check.subject == "acme" and check.key_id is None


def test_changed_descriptor_field_is_tampered(tmp_path: Path, rsa_key: Any) -> None:
    path = make_archive(tmp_path / "ca")
    ocm_sign(path, rsa_key, signature_name="acme")
    _edit(path, lambda d: d["component"].update(provider="mallory"))
    result = ocm_verify(path, trust_of(rsa_key))
    assert result.reason is Reason.TAMPERED and result.fault == "component descriptor"


def test_changed_signature_value_is_made_by_no_trusted_key(tmp_path: Path, rsa_key: Any) -> None:
    path = make_archive(tmp_path / "ca")
    ocm_sign(path, rsa_key, signature_name="acme")

    def flip(d: dict[str, Any]) -> None:
        sig = d["signatures"][0]["signature"]
        sig["value"] = ("0" if sig["value"][0] != "0" else "1") + sig["value"][1:]

    _edit(path, flip)
    assert ocm_verify(path, trust_of(rsa_key)).reason is Reason.UNKNOWN_KEY


def test_wrong_name_is_a_usage_error_naming_the_signatures(tmp_path: Path, rsa_key: Any) -> None:
    path = make_archive(tmp_path / "ca")
    ocm_sign(path, rsa_key, signature_name="acme")
    _edit(path, lambda d: d["component"].update(repositoryContexts=[{"type": "OCIRegistry", "baseUrl": "x"}]))
    assert ocm_verify(path, trust_of(rsa_key)).verified  # a field no normalisation covers
    assert ocm_verify(path, trust_of(rsa_key), names=["acme"]).verified
    with pytest.raises(UsageError) as exc:
        ocm_verify(path, trust_of(rsa_key), names=["nope"])
    assert exc.value.subject == "nope" and "'acme'" in exc.value.message
    with pytest.raises(UsageError):  # OCM signatures are never detached files
        FORMAT.verify(path, trust=trust_of(rsa_key), signature=tmp_path / "acme.sig")


def test_unsigned_archive_is_unsigned(tmp_path: Path, rsa_key: Any) -> None:
    result = ocm_verify(make_archive(tmp_path / "ca"), trust_of(rsa_key))
    assert result.reason is Reason.UNSIGNED and result.signatures == ()


def test_named_signatures_coexist_and_resigning_replaces_only_one(
    tmp_path: Path, rsa_key: Any, other_rsa_key: Any
) -> None:
    path = make_archive(tmp_path / "ca")
    ocm_sign(path, rsa_key, signature_name="a")
    ocm_sign(path, other_rsa_key, signature_name="b", algorithm="RSASSA-PSS")
    first_b = _descriptor_yaml(path)["signatures"][1]
    ocm_sign(path, other_rsa_key, signature_name="a")
    sigs = _descriptor_yaml(path)["signatures"]
    assert [s["name"] for s in sigs] == ["a", "b"] and sigs[1] == first_b
    result = ocm_verify(path, trust_of(other_rsa_key))
    assert [(c.claims["signature"], c.status) for c in result.signatures] == [("a", "valid"), ("b", "valid")]
    assert len(result.valid_key_ids) == 1


def test_every_signature_is_its_own_check_and_threshold_counts_keys(
    tmp_path: Path, rsa_key: Any, other_rsa_key: Any
) -> None:
    path = make_archive(tmp_path / "ca")
    ocm_sign(path, rsa_key, signature_name="a")
    ocm_sign(path, other_rsa_key, signature_name="b")
    only_a = ocm_verify(path, trust_of(rsa_key))
    assert only_a.verified and [c.status for c in only_a.signatures] == ["valid", "unknown-key"]
    both = trust_of(rsa_key, other_rsa_key)
    assert FORMAT.verify(path, trust=both, threshold=2).verified
    assert not FORMAT.verify(path, trust=trust_of(rsa_key), threshold=2).verified


def test_tar_archive_round_trip_and_blob_tamper(tmp_path: Path, rsa_key: Any) -> None:
    path = make_archive(tmp_path / "ca.tar", tar=True)
    assert FORMAT.default_output(path, FORMAT.options()) == path
    ocm_sign(path, rsa_key, signature_name="acme")
    assert ocm_verify(path, trust_of(rsa_key)).verified
    cv, _ = open_component_version(path)
    from signery.ocm import write_component_archive

    write_component_archive(path, cv.descriptor, {BLOB_REF: b"other"}, tar=True)  # another blob, same name
    assert ocm_verify(path, trust_of(rsa_key)).reason is Reason.TAMPERED


def test_sign_to_another_output_leaves_the_subject(tmp_path: Path, rsa_key: Any) -> None:
    path = make_archive(tmp_path / "ca")
    before = (path / "component-descriptor.yaml").read_bytes()
    out = FORMAT.sign(path, FileSigner(rsa_key), output=tmp_path / "signed")
    assert out == tmp_path / "signed" and (path / "component-descriptor.yaml").read_bytes() == before
    assert ocm_verify(out, trust_of(rsa_key)).verified


def test_tar_with_traversal_is_refused(tmp_path: Path, rsa_key: Any) -> None:
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
    with pytest.raises(UnsafeArchiveError):
        ocm_verify(path, trust_of(rsa_key))


def test_missing_blob_is_malformed_naming_it(tmp_path: Path, rsa_key: Any) -> None:
    path = make_archive(tmp_path / "ca")
    ocm_sign(path, rsa_key, signature_name="acme")
    for blob in (path / "blobs").iterdir():
        blob.unlink()
    check = _only(ocm_verify(path, trust_of(rsa_key)))
    assert check.reason is Reason.MALFORMED and check.subject == BLOB_REF
    with pytest.raises(MalformedError) as exc:
        ocm_sign(path, rsa_key, signature_name="acme")
    assert exc.value.subject == BLOB_REF


def test_blob_reference_cannot_escape(tmp_path: Path, rsa_key: Any) -> None:
    path = make_archive(tmp_path / "ca")
    _edit(path, lambda d: d["component"]["resources"][0]["access"].update(localReference="../../etc/passwd"))
    with pytest.raises(UnsafeArchiveError):
        ocm_sign(path, rsa_key, signature_name="acme")


def test_unknown_hash_and_normalisation_in_signature_are_named(tmp_path: Path, rsa_key: Any) -> None:
    path = make_archive(tmp_path / "ca")
    ocm_sign(path, rsa_key, signature_name="acme")
    for field, value in (("hashAlgorithm", "MD5"), ("normalisationAlgorithm", "jsonNormalisation/v9")):
        _edit(path, lambda d, f=field, v=value: d["signatures"][0]["digest"].update({f: v}))
        check = _only(ocm_verify(path, trust_of(rsa_key)))
        assert check.reason is Reason.MALFORMED and check.subject == f"signatures[acme].digest.{field}"
        ocm_sign(path, rsa_key, signature_name="acme")


def test_a_malformed_signature_does_not_hide_a_good_one(tmp_path: Path, rsa_key: Any) -> None:
    path = make_archive(tmp_path / "ca")
    ocm_sign(path, rsa_key, signature_name="good")
    ocm_sign(path, rsa_key, signature_name="bad", algorithm="RSASSA-PSS")
    _edit(path, lambda d: d["signatures"][1]["signature"].update(mediaType=MEDIA_RSA))  # contradicts the algorithm
    result = ocm_verify(path, trust_of(rsa_key))
    assert result.verified and [c.status for c in result.signatures] == ["valid", "malformed"]


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
    with pytest.raises(UsageError) as exc:
        ocm_sign(path, rsa_key, signature_name="acme")
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
    entry = ocm_sign(ctf, rsa_key, signature_name="acme", component="acme.org/app:1.0.0")
    cv, _ = open_component_version(ctf, component="acme.org/app:1.0.0")
    ref_digest = cv.descriptor.references[0]["digest"]
    assert ref_digest["normalisationAlgorithm"] == "jsonNormalisation/v3" and entry["digest"]["value"]
    # the whole CTF verifies: app is signed, svc and lib are covered by the digests its signature signed
    result = ocm_verify(ctf, trust_of(rsa_key))
    assert result.verified, result.message
    assert ocm_verify(ctf, trust_of(rsa_key), component="acme.org/app").verified


def test_ctf_version_neither_signed_nor_referenced_is_unsigned(tmp_path: Path, rsa_key: Any) -> None:
    ctf = _ctf(tmp_path)
    ocm_sign(ctf, rsa_key, signature_name="acme", component="acme.org/svc:1.1.0")  # covers svc and lib, not app
    result = ocm_verify(ctf, trust_of(rsa_key))
    assert result.reason is Reason.UNSIGNED and result.fault == "acme.org/app:1.0.0"
    ocm_sign(ctf, rsa_key, signature_name="acme", component="acme.org/app:1.0.0")
    result = ocm_verify(ctf, trust_of(rsa_key))
    assert result.verified and {c.claims["component"] for c in result.signatures} == {
        "acme.org/svc:1.1.0",
        "acme.org/app:1.0.0",
    }


def test_ctf_version_signed_by_an_untrusted_key_fails_the_ctf(tmp_path: Path, rsa_key: Any, other_rsa_key: Any) -> None:
    ctf = _ctf(tmp_path)
    ocm_sign(ctf, rsa_key, signature_name="acme", component="acme.org/lib:2.0.0")
    ocm_sign(ctf, other_rsa_key, signature_name="acme", component="acme.org/svc:1.1.0")
    ocm_sign(ctf, rsa_key, signature_name="acme", component="acme.org/app:1.0.0")
    assert ocm_verify(ctf, trust_of(rsa_key)).verified  # svc's own signature is unknown, but app's covers it
    only_svc = ocm_verify(ctf, trust_of(other_rsa_key))  # svc verifies and covers lib; app is by another key
    assert not only_svc.verified and only_svc.reason is Reason.UNKNOWN_KEY
    assert [c.claims["component"] for c in only_svc.signatures] == ["acme.org/app:1.0.0"]
    assert only_svc.fault == "acme.org/app:1.0.0: acme"


def test_tampered_nested_reference_is_named(tmp_path: Path, rsa_key: Any) -> None:
    ctf = _ctf(tmp_path)
    ocm_sign(ctf, rsa_key, signature_name="acme", component="acme.org/app:1.0.0")
    lib, _ = open_component_version(ctf, component="acme.org/lib:2.0.0")
    lib.descriptor.raw["component"]["provider"] = "mallory"
    lib.save()
    result = ocm_verify(ctf, trust_of(rsa_key), component="acme.org/app:1.0.0")
    assert result.reason is Reason.TAMPERED
    assert result.fault == "acme.org/app:1.0.0: reference svc"  # the direct reference whose closure changed
    whole = ocm_verify(ctf, trust_of(rsa_key))
    assert whole.reason is Reason.TAMPERED and whole.fault == "acme.org/app:1.0.0: reference svc"


def test_missing_reference_is_a_clear_error(tmp_path: Path, rsa_key: Any) -> None:
    path = make_archive(
        tmp_path / "ca", componentReferences=[{"name": "x", "componentName": "acme.org/x", "version": "1"}]
    )
    with pytest.raises(UsageError) as exc:
        ocm_sign(path, rsa_key, signature_name="acme")
    assert exc.value.subject == "reference x"


def test_references_resolve_from_repository(tmp_path: Path, rsa_key: Any) -> None:
    ctf = _ctf(tmp_path)
    path = make_archive(
        tmp_path / "ca",
        name="acme.org/top",
        componentReferences=[{"name": "app", "componentName": "acme.org/app", "version": "1.0.0"}],
    )
    ocm_sign(path, rsa_key, signature_name="acme", repository=(ctf,))
    check = _only(ocm_verify(path, trust_of(rsa_key)))
    assert check.reason is Reason.MALFORMED and check.subject == "reference app"  # unresolvable without it
    assert ocm_verify(path, trust_of(rsa_key), repository=[ctf]).verified


def test_ctf_needs_component_when_ambiguous(tmp_path: Path, rsa_key: Any) -> None:
    with pytest.raises(UsageError) as exc:
        open_component_version(_ctf(tmp_path))
    assert exc.value.subject == "--component"
    with pytest.raises(UsageError) as exc:
        ocm_sign(tmp_path / "ctf", rsa_key)
    assert exc.value.subject == "--component"


def test_compat_private_key_signs_like_ocm(vectors: Path, compat: Path) -> None:
    """Signing the compat digest the legacy way yields OCM's recorded signature (PKCS#1 v1.5 is deterministic)."""
    cv, _ = open_component_version(compat)
    recorded = cv.descriptor.signature("test")
    assert recorded is not None
    signer = FileSigner(load_private_key_file(vectors / "ocm/compat-archive/rsa.priv"))
    raw = signer.sign_digest(bytes.fromhex(recorded["digest"]["value"]), hash_name="sha256", rsa_padding="pkcs1v15")
    assert raw.hex() == recorded["signature"]["value"]
    entry = ocm_sign(compat, signer, signature_name="again", normalisation="jsonNormalisation/v1")
    assert entry["digest"]["value"] != recorded["digest"]["value"]  # OCM today writes extraIdentity: null in v1
    result = ocm_verify(compat, trust_of(signer.public_key()))
    assert result.verified and [c.status for c in result.signatures] == ["valid", "valid"]
