"""Normalisation and digests, byte for byte against OCM's own vectors."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ocm_helpers import descriptor_doc

from signery.errors import MalformedError, UsageError
from signery.ocm import descriptor_digest, load_descriptor, normalise, parse_descriptor

# From open-component-model/ocm api/ocm/compdesc/norm_test.go (CD1) with the strings it asserts.
CD1 = b"""
component:
  componentReferences: []
  name: github.com/vasu1124/introspect
  provider: internal
  repositoryContexts:
  - baseUrl: ghcr.io/vasu1124/ocm
    componentNameMapping: urlPath
    type: ociRegistry
  resources:
  - access:
      localReference: sha256:7f0168496f273c1e2095703a050128114d339c580b0906cd124a93b66ae471e2
      mediaType: application/vnd.docker.distribution.manifest.v2+tar+gzip
      referenceName: vasu1124/introspect:1.0.0
      type: localBlob
    digest:
      hashAlgorithm: SHA-256
      normalisationAlgorithm: ociArtifactDigest/v1
      value: 6a1c7637a528ab5957ab60edf73b5298a0a03de02a96be0313ee89b22544840c
    labels:
    - name: label1
      value: foo
    - name: label2
      value: bar
      signing: true
      mergeAlgorithm: test
    name: introspect-image
    relation: local
    type: ociImage
    version: 1.0.0
  - access:
      localReference: sha256:d1187ac17793b2f5fa26175c21cabb6ce388871ae989e16ff9a38bd6b32507bf
      mediaType: ""
      type: localBlob
    digest:
      hashAlgorithm: SHA-256
      normalisationAlgorithm: genericBlobDigest/v1
      value: d1187ac17793b2f5fa26175c21cabb6ce388871ae989e16ff9a38bd6b32507bf
    name: introspect-blueprint
    relation: local
    type: landscaper.gardener.cloud/blueprint
    version: 1.0.0
  - access:
      localReference: sha256:4186663939459149a21c0bb1cd7b8ff86e0021b29ca45069446d046f808e6bfe
      mediaType: application/vnd.oci.image.manifest.v1+tar+gzip
      referenceName: vasu1124/helm/introspect-helm:0.1.0
      type: localBlob
    digest:
      hashAlgorithm: SHA-256
      normalisationAlgorithm: ociArtifactDigest/v1
      value: 6229be2be7e328f74ba595d93b814b590b1aa262a1b85e49cc1492795a9e564c
    name: introspect-helm
    relation: external
    type: helm
    version: 0.1.0
  sources:
  - access:
      repository: github.com/vasu1124/introspect
      type: git
    name: introspect
    type: git
    version: 1.0.0
  version: 1.0.0
meta:
  schemaVersion: v2
"""
CD1_V1_SHA256 = "60656e9a2301f21f6f2b6d61e68541f4b3fc0d352ceed26245f948594452622c"
CD1_V2_SHA256 = "2f8f029e45f0e158b7e9a5fa6523be0ae9ab9eadc6f3c7f2e37ebb6d8e79bb01"


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- the must-pass vectors ---


def test_conformance_v3_01_normalises_to_expected_bytes(vectors: Path) -> None:
    d = load_descriptor(vectors / "ocm/conformance-v3-01/input.yaml")
    expected = (vectors / "ocm/conformance-v3-01/expected.json").read_bytes().rstrip(b"\n")
    assert normalise(d, "jsonNormalisation/v3") == expected
    assert normalise(d, "jsonNormalisation/v4alpha1") == expected
    assert _sha(expected) == "c97c44a4dca9fc85d4e634a617b662f72935cc202d52a46aa9367c937458b35b"


def test_sigstore_descriptor_recorded_v3_digest_is_reproduced(vectors: Path) -> None:
    d = load_descriptor(vectors / "ocm/sigstore/component-descriptor-signed.yaml")
    recorded = d.signatures[0]["digest"]["value"]
    assert recorded == "20d12fdfaf1f57c970d63608db4eaeaab934527ab19caac9b4518502d31c5d72"
    assert descriptor_digest(d, normalisation="jsonNormalisation/v3", hash_alg="sha256") == recorded


def test_compat_archive_v1_digest_is_the_pre_null_encoding(vectors: Path) -> None:
    d = load_descriptor(vectors / "ocm/compat-archive/component-archive/component-descriptor.yaml")
    old = normalise(d, "jsonNormalisation/v1", v1_null_extra_identity=False)
    assert _sha(old) == "b06e4c1a68274b876661f9fbf1f100526d289745f6ee847bfef702007b5b14cf"
    assert _sha(normalise(d, "jsonNormalisation/v1")).startswith("cceaa573")


# --- OCM's norm_test.go strings ---


def test_cd1_v1_entry_encoding() -> None:
    n = normalise(parse_descriptor(CD1), "jsonNormalisation/v1")
    assert n.startswith(b'[{"component":[{"componentReferences":[]},{"name":"github.com/vasu1124/introspect"}')
    assert b'{"extraIdentity":null}' in n and b'"sources"' not in n and b"label1" not in n
    assert _sha(n) == CD1_V1_SHA256


def test_cd1_v2_and_v3_jcs() -> None:
    d = parse_descriptor(CD1)
    v2 = normalise(d, "jsonNormalisation/v2")
    assert _sha(v2) == CD1_V2_SHA256
    assert normalise(d, "jsonNormalisation/v3") == v2  # no duplicates: the legacy defaulting changes nothing
    assert b'"labels":[{"name":"label2","signing":true,"value":"bar"}]' in v2
    assert b"mergeAlgorithm" not in v2 and b"repositoryContexts" not in v2 and b"access" not in v2


def test_none_access_drops_digest() -> None:
    doc = json.loads(json.dumps(descriptor_doc()))
    doc["component"]["resources"].append(
        {
            "name": "none",
            "version": "v1",
            "type": "plainText",
            "relation": "local",
            "access": {"type": "none"},
            "digest": {"hashAlgorithm": "x", "normalisationAlgorithm": "y", "value": "z"},
        }
    )
    n = normalise(parse_descriptor(json.dumps(doc).encode()), "jsonNormalisation/v3")
    assert b'{"name":"none","relation":"local","type":"plainText","version":"v1"}' in n


def test_duplicate_resources_defaulted_in_v2_not_v3() -> None:
    doc = descriptor_doc()
    res = doc["component"]["resources"][0]
    doc["component"]["resources"] = [dict(res, version="1"), dict(res, version="2")]
    d = parse_descriptor(json.dumps(doc).encode())
    v2, v3 = normalise(d, "jsonNormalisation/v2"), normalise(d, "jsonNormalisation/v3")
    assert b'"extraIdentity":{"version":"1"}' in v2 and b'"extraIdentity":{"version":"2"}' not in v2
    assert b"extraIdentity" not in v3


def test_provider_json_string_and_labels() -> None:
    provider = json.dumps(
        {"name": "acme", "labels": [{"name": "a", "value": 1}, {"name": "b", "value": 2, "signing": "true"}]}
    )
    labels = [{"name": "x", "value": "v"}, {"name": "y", "value": {"k": [1, 2]}, "signing": True, "merge": {"a": 1}}]
    d = parse_descriptor(json.dumps(descriptor_doc(provider=provider, labels=labels)).encode())
    n = normalise(d, "jsonNormalisation/v3")
    assert b'"provider":{"labels":[{"name":"b","signing":"true","value":2}],"name":"acme"}' in n
    assert b'"labels":[{"name":"y","signing":true,"value":{"k":[1,2]}}]' in n


def test_reference_labels_are_not_filtered_as_in_go() -> None:
    ref = {
        "name": "dep",
        "componentName": "acme.org/dep",
        "version": "1.0.0",
        "labels": [{"name": "volatile", "value": "x", "merge": {"algorithm": "default"}}],
    }
    n = normalise(
        parse_descriptor(json.dumps(descriptor_doc(componentReferences=[ref])).encode()), "jsonNormalisation/v3"
    )
    assert b'"labels":[{"merge":{"algorithm":"default"},"name":"volatile","value":"x"}]' in n


def test_creation_time_kept_as_string_and_unquoted_numbers_become_strings() -> None:
    text = b"""meta: {schemaVersion: v2}
component:
  name: acme.org/x
  version: 1.0
  provider: acme
  creationTime: 2025-07-28T11:40:51Z
  resources: []
"""
    n = normalise(parse_descriptor(text), "jsonNormalisation/v3")
    assert n == (
        b'{"component":{"componentReferences":[],"creationTime":"2025-07-28T11:40:51Z","name":"acme.org/x",'
        b'"provider":{"name":"acme"},"resources":[],"sources":[],"version":"1"}}'
    )


def test_v1_escapes_html_like_go() -> None:
    d = parse_descriptor(json.dumps(descriptor_doc(provider="a<b>&c")).encode())
    assert b'"provider":"a\\u003cb\\u003e\\u0026c"' in normalise(d, "jsonNormalisation/v1")
    assert b'"name":"a<b>&c"' in normalise(d, "jsonNormalisation/v3")  # JCS does not escape


def test_v3alpha1_is_read_in_the_v2_shape() -> None:
    text = b"""apiVersion: ocm.software/v3alpha1
kind: ComponentVersion
metadata:
  name: ocm.software/simpleapp
  provider: {name: ocm.software}
  version: 0.1.0
repositoryContexts: []
spec:
  resources:
  - {name: image, relation: external, type: ociImage, version: "1.0",
     access: {type: ociArtifact, imageReference: "gcr.io/x:1"},
     digest: {hashAlgorithm: SHA-256, normalisationAlgorithm: ociArtifactDigest/v1, value: "ab"}}
  references:
  - {name: dep, componentName: ocm.software/dep, version: 1.0.0}
"""
    d = parse_descriptor(text)
    n = normalise(d, "jsonNormalisation/v3")
    assert n.startswith(b'{"component":{"componentReferences":[{"componentName":"ocm.software/dep"')
    assert b'"provider":{"name":"ocm.software"}' in n and b'"sources":[]' in n
    with pytest.raises(UsageError):
        normalise(d, "jsonNormalisation/v1")


@pytest.mark.parametrize("algorithm", ["jsonNormalisation/v5", "jcs", ""])
def test_unknown_normalisation_is_refused(algorithm: str) -> None:
    with pytest.raises(MalformedError) as exc:
        normalise(parse_descriptor(json.dumps(descriptor_doc()).encode()), algorithm)
    assert exc.value.subject == "algorithm"


@pytest.mark.parametrize(
    ("text", "field"),
    [
        (b"meta: {schemaVersion: v3}\ncomponent: {name: a, version: b}", "meta.schemaVersion"),
        (b"meta: {schemaVersion: v2}\ncomponent: {version: b}", "name"),
        (b"meta: {schemaVersion: v2}\ncomponent: {name: a, version: b, resources: {}}", "component.resources"),
        (
            b"meta: {schemaVersion: v2}\ncomponent: {name: a, version: b, resources: [{version: 1}]}",
            "component.resources[0].name",
        ),
        (b"apiVersion: ocm.software/v9\nkind: ComponentVersion", "apiVersion"),
    ],
)
def test_malformed_descriptors_name_the_field(text: bytes, field: str) -> None:
    with pytest.raises(MalformedError) as exc:
        parse_descriptor(text)
    assert exc.value.subject == field


def test_yaml_aliases_are_refused() -> None:
    bomb = b"a: &a [x, x, x]\nb: &b [*a, *a, *a]\nmeta: {schemaVersion: v2}\ncomponent: {name: n, version: v}"
    with pytest.raises(MalformedError, match=r"anchors|aliases"):
        parse_descriptor(bomb)


def test_deep_nesting_is_refused() -> None:
    value: object = "x"
    for _ in range(100):
        value = [value]
    doc = descriptor_doc(labels=[{"name": "deep", "value": value, "signing": True}])
    with pytest.raises(MalformedError, match="nested"):
        parse_descriptor(json.dumps(doc).encode())


_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=20)


@settings(max_examples=60, deadline=None)
@given(
    provider=_text,
    label=st.recursive(
        st.none() | st.booleans() | st.integers(-(2**50), 2**50) | _text,
        lambda c: st.lists(c, max_size=3) | st.dictionaries(_text, c, max_size=3),
        max_leaves=8,
    ),
)
def test_normalisations_are_deterministic_and_valid_json(provider: str, label: object) -> None:
    doc = descriptor_doc(provider=provider or "p", labels=[{"name": "l", "value": label, "signing": True}])
    d = parse_descriptor(json.dumps(doc).encode())
    for alg in ("jsonNormalisation/v1", "jsonNormalisation/v2", "jsonNormalisation/v3"):
        first = normalise(d, alg)
        assert first == normalise(parse_descriptor(json.dumps(doc).encode()), alg)
        json.loads(first)
