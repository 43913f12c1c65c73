"""Reading descriptors from hostile sources: once, fast, bounded, and every failure ``malformed`` naming the file."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import sys
import tarfile
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from ocm_helpers import BLOB, BLOB_REF, descriptor_doc, large_descriptor_yaml, make_descriptor

import signery.ocm.descriptor as descriptor_module
from signery.errors import MalformedError
from signery.keys import FileSigner
from signery.ocm import (
    Descriptor,
    digest_component_version,
    load_descriptor,
    normalise,
    open_component_version,
    parse_descriptor,
    sign_component_version,
    verify_component_version,
    write_component_archive,
    write_transport_archive,
)
from signery.ocm.archive import DESCRIPTOR_FILE
from signery.ocm.descriptor import MAX_DEPTH, MAX_DESCRIPTOR_BYTES
from signery.ocm.normalise import _default_extra_identity_version

HEAD = b"meta: {schemaVersion: v2}\ncomponent: {name: a, version: b, provider: p, labels: "


@pytest.fixture()
def parses(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Count descriptor parses; any other YAML reading (PyYAML's pure-Python or C loaders) fails the test."""
    calls: list[str] = []
    for name in ("load_yaml", "load_json"):
        real = getattr(descriptor_module, name)

        def counted(*args: Any, _real: Any = real, _name: str = name, **kw: Any) -> Any:
            calls.append(_name)
            return _real(*args, **kw)

        monkeypatch.setattr(descriptor_module, name, counted)

    def forbidden(*args: Any, **kw: Any) -> Any:
        raise AssertionError("a descriptor was read outside the bounded parser")

    for name in ("parse", "compose", "compose_all", "load", "load_all", "safe_load", "safe_load_all"):
        monkeypatch.setattr(yaml, name, forbidden)
    return calls


def _ca(tmp_path: Path, text: bytes) -> Path:
    path = tmp_path / "ca"
    (path / "blobs").mkdir(parents=True)
    (path / DESCRIPTOR_FILE).write_bytes(text)
    return path


def _nested(depth: int) -> Any:
    value: Any = "x"
    for _ in range(depth):
        value = [value]
    return value


# --- a large descriptor: parsed once, in seconds ---


@pytest.mark.slow
def test_an_8_mib_descriptor_parses_once_and_in_seconds(tmp_path: Path, parses: list[str]) -> None:
    text = large_descriptor_yaml()
    assert 8_000_000 < len(text) <= MAX_DESCRIPTOR_BYTES
    path = _ca(tmp_path, text)
    wall, cpu = time.perf_counter(), time.process_time()
    cv, repo = open_component_version(path)
    parsed_wall, parsed_cpu = time.perf_counter() - wall, time.process_time() - cpu
    digest = digest_component_version(cv, repository=repo)
    total_wall, total_cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(
        f"\n{len(text)} byte descriptor, {len(cv.descriptor.resources)} resources: "
        f"open {parsed_wall:.2f} s ({parsed_cpu:.2f} s CPU), open+digest {total_wall:.2f} s ({total_cpu:.2f} s CPU)",
        file=sys.stderr,
    )
    assert parses == ["load_yaml"]
    assert len(cv.descriptor.resources) > 9_000 and len(digest) == 64
    assert total_cpu < 20, f"open+digest of an 8 MiB descriptor took {total_cpu:.1f} s of CPU"


def test_a_large_descriptor_is_parsed_once_through_sign_and_verify(
    tmp_path: Path, rsa_key: Any, parses: list[str]
) -> None:
    doc = descriptor_doc()
    doc["component"]["resources"] += [
        {
            "name": f"r{i}",
            "version": "1",
            "type": "ociImage",
            "relation": "external",
            "access": {"type": "ociArtifact", "imageReference": f"ghcr.io/acme/r{i}:1"},
            "digest": {"hashAlgorithm": "SHA-256", "normalisationAlgorithm": "ociArtifactDigest/v1", "value": "0" * 64},
        }
        for i in range(300)
    ]
    for tar in (False, True):
        path = write_component_archive(tmp_path / f"ca{tar}", Descriptor(doc), {BLOB_REF: BLOB}, tar=tar)
        parses.clear()
        cv, _ = open_component_version(path)
        sign_component_version(cv, FileSigner(rsa_key), name="acme")  # writes the archive back, without re-reading
        assert verify_component_version(cv, signature="acme", public_key=rsa_key.public_key()).verified
        assert parses == ["load_yaml"]
        cv2, _ = open_component_version(path)
        assert verify_component_version(cv2, signature="acme", public_key=rsa_key.public_key()).verified
        assert parses == ["load_yaml", "load_yaml"]


# --- size is bounded before parsing ---


def test_an_oversize_descriptor_is_refused_before_parsing(tmp_path: Path, parses: list[str]) -> None:
    text = b"meta: {schemaVersion: v2}\ncomponent: {name: a, version: b}\n#" + b"x" * MAX_DESCRIPTOR_BYTES
    path = _ca(tmp_path, text)
    file = path / DESCRIPTOR_FILE
    for source, load in (
        (str(file), lambda: open_component_version(path)),
        (str(file), lambda: load_descriptor(file)),
        ("big", lambda: parse_descriptor(text, source="big")),
    ):
        with pytest.raises(MalformedError, match="larger than") as exc:
            load()
        assert exc.value.subject == source
    tar = tmp_path / "ca.tar"
    with tarfile.open(tar, "w") as tf:
        info = tarfile.TarInfo(DESCRIPTOR_FILE)
        info.size = len(text)
        tf.addfile(info, io.BytesIO(text))
    with pytest.raises(MalformedError, match="larger than") as exc:
        open_component_version(tar)
    assert exc.value.subject == f"{tar}:{DESCRIPTOR_FILE}"
    assert parses == []


# --- nesting, aliases, duplicates, several documents: malformed naming the file ---


@pytest.mark.parametrize("depth", [MAX_DEPTH, 1_000, 200_000])
@pytest.mark.parametrize("form", ["yaml-flow", "yaml-block", "json"])
def test_deeply_nested_descriptors_are_malformed_naming_the_file(tmp_path: Path, form: str, depth: int) -> None:
    if form == "yaml-flow":
        text = HEAD + b"[" * depth + b"]" * depth + b"}\n"
    elif form == "yaml-block":
        depth = min(depth, 2_000)  # indentation grows quadratically
        lines = ["meta: {schemaVersion: v2}", "component:", "  name: a", "  version: b", "  labels:"]
        lines += [" " * (2 * i + 4) + "k:" for i in range(depth)] + [" " * (2 * depth + 4) + "x"]
        text = "\n".join(lines).encode()
    else:
        doc = descriptor_doc()
        text = json.dumps(doc)[:-2].encode() + b', "labels": ' + b"[" * depth + b"]" * depth + b"}}"
    path = _ca(tmp_path, text)
    file = str(path / DESCRIPTOR_FILE)
    with pytest.raises(MalformedError, match=r"nested|nesting") as exc:
        open_component_version(path)
    assert exc.value.subject == file and file in exc.value.message
    with pytest.raises(MalformedError) as exc:
        load_descriptor(path / DESCRIPTOR_FILE)
    assert exc.value.subject == file


def test_nesting_up_to_the_bound_is_accepted_in_both_forms() -> None:
    # The root mapping, component and labels are three levels; the label list and its nesting take the rest.
    value = _nested(MAX_DEPTH - 4)
    doc = descriptor_doc(labels=[{"name": "deep", "value": value, "signing": True}])
    from_json = parse_descriptor(json.dumps(doc).encode())
    from_yaml = parse_descriptor(yaml.safe_dump(doc).encode())
    assert from_json.raw == from_yaml.raw
    assert normalise(from_json, "jsonNormalisation/v1") == normalise(from_yaml, "jsonNormalisation/v1")
    doc = descriptor_doc(labels=[{"name": "deep", "value": [value], "signing": True}])
    for text in (json.dumps(doc).encode(), yaml.safe_dump(doc).encode()):
        with pytest.raises(MalformedError, match="nested"):
            parse_descriptor(text, source="d")


def test_an_alias_bomb_is_refused_naming_the_file(tmp_path: Path) -> None:
    lines = ["meta: {schemaVersion: v2}", "component: {name: a, version: b}", 'l0: &l0 ["lol"]']
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]" for i in range(1, 12)]
    path = _ca(tmp_path, "\n".join(lines).encode())
    with pytest.raises(MalformedError, match=r"anchor|alias") as exc:
        open_component_version(path)
    assert exc.value.subject == str(path / DESCRIPTOR_FILE)
    for text in (b"a: &x 1\nb: *x\n", b"b: *x\n"):  # an alias is refused even without its anchor
        with pytest.raises(MalformedError, match=r"anchor|alias") as exc:
            parse_descriptor(text + b"meta: {schemaVersion: v2}\ncomponent: {name: a, version: b}", source="d")
        assert exc.value.subject == "d"


@pytest.mark.parametrize(
    "text",
    [
        b"meta: {schemaVersion: v2}\ncomponent: {name: a, version: b, name: c}",
        b'{"meta": {"schemaVersion": "v2"}, "component": {"name": "a", "version": "b", "name": "c"}}',
        b"meta: {schemaVersion: v2}\ncomponent: {name: a, version: b}\n---\nmeta: {schemaVersion: v2}",
        b"meta: {schemaVersion: v2}\ncomponent: {name: a, version: b",
        b'{"meta": {"schemaVersion": "v2"}, "component": ',
        b"\xff\xfe not utf-8",
        b"",
        b"- a list",
        b"meta: {schemaVersion: v2}\ncomponent: {name: a, version: b, labels: [{name: l, value: !!binary aGk=}]}",
        b"meta: {schemaVersion: v2}\ncomponent: {name: a, version: b, labels: [{name: l, value: !!set {x}}]}",
        b"meta: {schemaVersion: v2}\ncomponent: {name: a, version: b, creationTime: !!timestamp 2020-01-01}",
        b"meta: {schemaVersion: v2}\ncomponent: {name: a, version: b, labels: [{1: x}]}",
    ],
)
def test_unreadable_descriptors_are_malformed_naming_the_file(tmp_path: Path, text: bytes) -> None:
    file = tmp_path / "d.yaml"
    file.write_bytes(text)
    with pytest.raises(MalformedError) as exc:
        load_descriptor(file)
    assert exc.value.subject == str(file) and str(file) in exc.value.message


def test_timestamps_stay_strings_with_libyaml() -> None:
    d = parse_descriptor(b"meta: {schemaVersion: v2}\ncomponent: {name: a, version: 1, creationTime: 2020-01-01}")
    assert d.raw["component"]["creationTime"] == "2020-01-01" and d.version == "1"
    assert issubclass(descriptor_module._Loader, getattr(yaml, "CSafeLoader", yaml.SafeLoader))


# --- component archives and CTFs read every descriptor through the same function ---


def test_ctf_descriptor_layer_and_manifests_are_bounded(tmp_path: Path) -> None:
    ctf = write_transport_archive(tmp_path / "ctf", [(make_descriptor(), {BLOB_REF: BLOB})])
    cv, _ = open_component_version(ctf)
    where = cv.location

    deep = HEAD + b"[" * 500 + b"]" * 500 + b"}"
    for i, (text, match) in enumerate(((deep, "nested"), (b"a: &x 1\nb: *x", r"anchor|alias"))):
        dst = tmp_path / f"ctf{i}"
        shutil.copytree(ctf, dst)
        _rewrite_descriptor_layer(dst, text)
        with pytest.raises(MalformedError, match=match) as exc:
            open_component_version(dst)
        assert exc.value.subject == where.replace(str(ctf), str(dst))

    # a manifest nested past any real one, and an index that is not JSON: malformed, never a RecursionError
    dst = tmp_path / "ctf-deep-manifest"
    shutil.copytree(ctf, dst)
    index = json.loads((dst / "artifact-index.json").read_text())
    manifest = ("[" * 100_000 + "]" * 100_000).encode()
    index["artifacts"][0]["digest"] = _put_blob(dst, manifest)
    (dst / "artifact-index.json").write_text(json.dumps(index))
    with pytest.raises(MalformedError, match="nested") as exc:
        open_component_version(dst)
    assert "manifest" in str(exc.value.subject)
    (dst / "artifact-index.json").write_text("[" * 100_000)
    with pytest.raises(MalformedError) as exc:
        open_component_version(dst)
    assert exc.value.subject == str(dst / "artifact-index.json")


def _put_blob(ctf: Path, data: bytes) -> str:
    digest = hashlib.sha256(data).hexdigest()
    (ctf / "blobs" / f"sha256.{digest}").write_bytes(data)
    return f"sha256:{digest}"


def _rewrite_descriptor_layer(ctf: Path, text: bytes) -> None:
    """Point the (single) component version's config at a new, plain (not tar) descriptor layer holding ``text``."""
    index = json.loads((ctf / "artifact-index.json").read_text())
    art = index["artifacts"][0]
    manifest = json.loads((ctf / "blobs" / art["digest"].replace(":", ".", 1)).read_bytes())
    layer = {"mediaType": "application/vnd.ocm.software.component-descriptor.v2+yaml", "digest": _put_blob(ctf, text)}
    config = {"componentDescriptorLayer": layer}
    manifest["config"]["digest"] = _put_blob(ctf, json.dumps(config).encode())
    art["digest"] = _put_blob(ctf, json.dumps(manifest).encode())
    (ctf / "artifact-index.json").write_text(json.dumps(index))


# --- normalisation never recurses past the bound ---


def test_a_deep_provider_json_string_is_malformed_not_a_recursion_error() -> None:
    for depth in (200, 100_000):
        provider = '{"name": "p", "x": ' + "[" * depth + "]" * depth + "}"
        d = make_descriptor(provider=provider)
        for alg in ("jsonNormalisation/v1", "jsonNormalisation/v3"):
            with pytest.raises(MalformedError, match="provider") as exc:
                normalise(d, alg)
            assert exc.value.subject == "component.provider"
    ok = make_descriptor(provider=json.dumps({"name": "p", "x": _nested(MAX_DEPTH - 4)}))
    json.loads(normalise(ok, "jsonNormalisation/v3"))


def test_descriptors_built_or_edited_in_memory_keep_the_bound() -> None:
    doc = descriptor_doc(labels=[{"name": "deep", "value": _nested(5_000), "signing": True}])
    with pytest.raises(MalformedError, match="nested"):
        Descriptor(doc)
    d = make_descriptor()
    d.raw["component"]["labels"] = [{"name": "deep", "value": _nested(5_000), "signing": True}]
    for alg in ("jsonNormalisation/v1", "jsonNormalisation/v3"):
        with pytest.raises(MalformedError, match="nested"):
            normalise(d, alg)
    with pytest.raises(MalformedError, match="nested"):
        d.copy()


def _default_extra_identity_version_pairwise(resources: list[Any]) -> None:
    """The pairwise definition (OCM's loop), to check the linear implementation against."""
    for i, a in enumerate(resources):
        if not isinstance(a, dict):
            continue
        for j, b in enumerate(resources):
            if i == j or not isinstance(b, dict) or a.get("name") != b.get("name"):
                continue
            if (a.get("extraIdentity") or {}) != (b.get("extraIdentity") or {}):
                continue
            extra = dict(a.get("extraIdentity") or {})
            extra["version"] = a.get("version", "")
            a["extraIdentity"] = extra
            break


_small = st.sampled_from(["a", "b", "1"])


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.fixed_dictionaries(
            {"name": _small, "version": _small},
            optional={"extraIdentity": st.none() | st.dictionaries(st.sampled_from(["version", "os"]), _small)},
        ),
        max_size=8,
    )
)
def test_extra_identity_defaulting_matches_the_pairwise_definition(resources: list[dict[str, Any]]) -> None:
    expected = json.loads(json.dumps(resources))
    _default_extra_identity_version_pairwise(expected)
    _default_extra_identity_version(resources)
    assert resources == expected


def test_extra_identity_defaulting_is_linear() -> None:
    resources = [{"name": "same", "version": str(i)} for i in range(9_999)]
    d = make_descriptor(resources=resources)
    start = time.process_time()
    normalise(d, "jsonNormalisation/v2")
    assert time.process_time() - start < 5
