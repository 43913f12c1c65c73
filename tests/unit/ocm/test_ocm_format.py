"""The OCM format as the registry and the host see it: options, detection, inference, inspection, the trust store
keeping certificates, and transfer into a transport archive."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.serialization import Encoding
from ocm_helpers import BLOB, BLOB_REF, cert_trust, make_archive, make_descriptor, ocm_sign, ocm_verify, trust_of

from signery import formats
from signery.errors import ConflictError, Reason, UsageError
from signery.formats._base import Format
from signery.formats.ocm import FORMAT, OCMOptions
from signery.keys import FileSigner, generate_private_key
from signery.ocm import open_component_version, write_transport_archive
from signery.ocm.archive import transfer
from signery.trust import TrustedKey, load_trusted_key_file


def test_the_registry_loads_it() -> None:
    fmt = formats.get_format("ocm")
    assert fmt is FORMAT and isinstance(fmt, Format)
    assert (fmt.name, fmt.embeds, fmt.detaches, fmt.options_type) == ("ocm", True, False, OCMOptions)


def test_options_defaults_and_validation(tmp_path: Path) -> None:
    o = FORMAT.options()
    assert isinstance(o, OCMOptions)
    assert (o.signature_name, o.algorithm, o.normalisation, o.hash_algorithm) == (
        "signery",
        "RSASSA-PKCS1-V1_5",
        "jsonNormalisation/v3",
        "sha256",
    )
    assert (o.chain, o.issuer, o.issuer_convention, o.component, o.repository) == (None, None, "subject", None, ())
    o = FORMAT.options(hash_algorithm="SHA-512", chain=str(tmp_path / "c.pem"), repository=[str(tmp_path)])
    assert o.hash_algorithm == "sha512" and o.chain == tmp_path / "c.pem" and o.repository == (tmp_path,)
    bad = [
        ("signature_name", ""),
        ("signature_name", "a\nb"),
        ("signature_name", "x" * 257),
        ("algorithm", "RSA"),
        ("normalisation", "jsonNormalisation/v9"),
        ("hash_algorithm", "md5"),
        ("issuer_convention", "auto"),
        ("component", ":1.0"),
        ("issuer", " "),
    ]
    for field, value in bad:
        with pytest.raises(UsageError) as exc:
            FORMAT.options(**{field: value})
        assert exc.value.subject == "--" + field.replace("_", "-"), field
    with pytest.raises(UsageError) as exc:
        FORMAT.options(category="partner")
    assert "category" in str(exc.value.subject) and "signature_name" in exc.value.message.replace("-", "_")


def test_an_ed25519_key_is_cautioned(rsa_key: Any) -> None:
    assert FORMAT.cautions(FileSigner(rsa_key)) == []
    (caution,) = FORMAT.cautions(FileSigner(generate_private_key("ed25519")))
    assert "OCM tools cannot verify" in caution


def test_detection_is_cheap_and_right(tmp_path: Path, rsa_key: Any) -> None:
    ca = make_archive(tmp_path / "ca")
    tar = make_archive(tmp_path / "ca.tar", tar=True)
    ctf = write_transport_archive(tmp_path / "ctf", [(make_descriptor(), {BLOB_REF: BLOB})])
    other = tmp_path / "sdist.tar.gz"
    with tarfile.open(other, "w:gz") as tf:
        info = tarfile.TarInfo("pkg-1.0/component-descriptor.yaml")
        info.size = 3
        tf.addfile(info, io.BytesIO(b"abc"))
    plain = tmp_path / "file.txt"
    plain.write_text("hello")
    for p in (ca, tar, ctf, other):
        assert FORMAT.may_carry(p), p
    assert not FORMAT.may_carry(plain) and not FORMAT.may_carry(tmp_path / "missing")
    assert not FORMAT.detect(ca) and not FORMAT.detect(tar)  # unsigned
    assert FORMAT.detect(ctf)  # a CTF holding component versions: verify says whether they are signed
    assert not FORMAT.detect(other) and not FORMAT.detect(plain)
    signer = FileSigner(rsa_key)
    for p in (ca, tar):
        assert formats.infer_format(p, signer) == "ocm"
        ocm_sign(p, rsa_key)
        assert FORMAT.detect(p) and not FORMAT.detect(p, signature=tmp_path / "x.sig")
        assert formats.detect_formats(p) == ["ocm"]
    assert formats.infer_format(ctf, signer) == "ocm"
    assert formats.infer_format(other, signer) == "native" and formats.infer_format(plain, signer) == "native"


def test_registry_sign_merges_into_the_archive_and_verify_all(tmp_path: Path, rsa_key: Any) -> None:
    ca = make_archive(tmp_path / "ca")
    fmt, written = formats.sign(ca, FileSigner(rsa_key), options={"signature_name": "a"})
    assert fmt is FORMAT and written == ca
    other = generate_private_key("rsa-2048")
    formats.sign(ca, FileSigner(other), format="ocm", options={"signature_name": "b"})  # in place again: kept
    result = formats.verify_all(ca, trust=trust_of(rsa_key, other), threshold=2)
    assert result.verified and len(result.signatures) == 2
    elsewhere = tmp_path / "copy"
    elsewhere.mkdir()
    with pytest.raises(UsageError):  # an existing output elsewhere is not overwritten
        formats.sign(ca, FileSigner(rsa_key), output=elsewhere)
    unsigned = make_archive(tmp_path / "unsigned")
    assert formats.verify_all(unsigned, trust=trust_of(rsa_key)).reason is Reason.UNSIGNED


def test_inspect_lists_versions_and_signatures(tmp_path: Path, rsa_key: Any, pki: Any) -> None:
    ca = make_archive(tmp_path / "ca")
    ocm_sign(ca, rsa_key, signature_name="plain")
    chain = tmp_path / "chain.pem"
    chain.write_bytes(b"".join(c.public_bytes(Encoding.PEM) for c in pki["leaf"].chain))
    ocm_sign(ca, pki["leaf"].key, signature_name="x509", chain=chain, algorithm="RSASSA-PSS")
    info = FORMAT.inspect(ca)
    assert info["kind"] == "directory"
    assert info["component_versions"] == [
        {"component": "acme.org/app:1.0.0", "name": "acme.org/app", "version": "1.0.0", "signatures": ["plain", "x509"]}
    ]
    plain, x509 = info["signatures"]
    assert plain["key_id"] is None and plain["claims"]["algorithm"] == "RSASSA-PKCS1-V1_5"
    assert x509["key_id"] is not None and x509["claims"]["certificate"] == "O=ACME,CN=acme.org"


def test_trust_store_keeps_the_certificate(tmp_path: Path, pki: Any) -> None:
    path = tmp_path / "root.cert.pem"
    path.write_bytes(pki["root"].certificate.public_bytes(Encoding.PEM))
    entry = load_trusted_key_file(path).key
    assert entry.certificate is not None and entry.certificate.startswith("-----BEGIN CERTIFICATE-----")
    assert entry.name == "ACME Root CA"
    assert TrustedKey.from_dict(json.loads(json.dumps(entry.to_dict()))) == entry
    assert "certificate" not in entry.summary()
    plain = trust_of(pki["root"].key)
    (k,) = plain
    assert "certificate" not in k.to_dict() and TrustedKey.from_dict(k.to_dict()).certificate is None


# -- transfer ----------------------------------------------------------------------------------------------------


def test_transfer_round_trip_keeps_signatures_verifying(tmp_path: Path, rsa_key: Any, pki: Any) -> None:
    ca = make_archive(tmp_path / "ca")
    ocm_sign(ca, rsa_key, signature_name="plain")
    chain = tmp_path / "chain.pem"
    chain.write_bytes(b"".join(c.public_bytes(Encoding.PEM) for c in pki["leaf"].chain))
    ocm_sign(ca, pki["leaf"].key, signature_name="x509", chain=chain)
    done = transfer(ca, tmp_path / "ctf")
    assert done.copied == ["acme.org/app:1.0.0"] and done.present == [] and done.missing == []
    ctf = tmp_path / "ctf"
    both = trust_of(rsa_key).union(cert_trust(tmp_path / "anchors", pki["root"].certificate))
    result = ocm_verify(ctf, both)
    assert result.verified and [c.status for c in result.signatures] == ["valid", "valid"]
    assert transfer(ca, ctf).present == ["acme.org/app:1.0.0"]  # the same again: nothing to do
    # and from that CTF into another one
    assert transfer(ctf, tmp_path / "ctf2", component="acme.org/app").copied == ["acme.org/app:1.0.0"]
    assert ocm_verify(tmp_path / "ctf2", both).verified


def test_transfer_refuses_a_different_version_of_the_same_name(tmp_path: Path, rsa_key: Any) -> None:
    ca = make_archive(tmp_path / "ca")
    ocm_sign(ca, rsa_key, signature_name="a")
    transfer(ca, tmp_path / "ctf")
    index = (tmp_path / "ctf" / "artifact-index.json").read_bytes()
    ocm_sign(ca, rsa_key, signature_name="b")
    with pytest.raises(ConflictError) as exc:
        transfer(ca, tmp_path / "ctf")
    assert exc.value.subject == "acme.org/app:1.0.0" and exc.value.exit_code == 2
    assert (tmp_path / "ctf" / "artifact-index.json").read_bytes() == index
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "x").write_text("x")
    with pytest.raises(UsageError):
        transfer(ca, tmp_path / "junk")


def test_transfer_copies_references_and_renames_blobs_by_digest(tmp_path: Path, rsa_key: Any) -> None:
    lib = make_descriptor(name="acme.org/lib", version="2.0.0")
    app = make_descriptor(componentReferences=[{"name": "lib", "componentName": "acme.org/lib", "version": "2.0.0"}])
    src = write_transport_archive(tmp_path / "src", [(lib, {BLOB_REF: BLOB}), (app, {BLOB_REF: BLOB})])
    ocm_sign(src, rsa_key, component="acme.org/app:1.0.0")
    done = transfer(src, tmp_path / "dst", component="acme.org/app:1.0.0")
    assert done.copied == ["acme.org/app:1.0.0", "acme.org/lib:2.0.0"]
    assert ocm_verify(tmp_path / "dst", trust_of(rsa_key)).verified
    # a component archive whose blob is not named by its digest
    ca = make_archive(tmp_path / "ca", name="acme.org/named")
    (ca / "blobs" / BLOB_REF.replace(":", ".")).rename(ca / "blobs" / "text.txt")
    doc = (ca / "component-descriptor.yaml").read_text().replace(BLOB_REF, "text.txt")
    (ca / "component-descriptor.yaml").write_text(doc)
    ocm_sign(ca, rsa_key)
    transfer(ca, tmp_path / "dst")
    cv, _ = open_component_version(tmp_path / "dst", component="acme.org/named")
    assert cv.descriptor.resources[0]["access"]["localReference"] == BLOB_REF
    assert ocm_verify(tmp_path / "dst", trust_of(rsa_key), component="acme.org/named").verified
