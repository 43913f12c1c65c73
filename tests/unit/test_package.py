"""signery.package, the one manifest reader: Dify, Elastic and Mattermost manifests from ZIP and .tar.gz packages,
where they may sit, what makes them ambiguous, and bounded, typed parsing (malformed naming field and file); and
Version, the one version type (semver precedence, Dify's four-part versions, refusals)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import tarfile
import time
import zipfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from signery.archive import ZipArchive
from signery.errors import MalformedError, SigneryError, UnsafeArchiveError
from signery.package import (
    MAX_VERSION_LENGTH,
    PackageManifest,
    Version,
    choose_manifest,
    is_manifest_path,
    latest_version,
    manifest_from_zip,
    parse_manifest,
    read_manifest,
)

DIFY = "name: hello\nversion: 1.0.0\nauthor: acme\ntype: plugin\n"
ELASTIC = "format_version: 3.0.0\nname: nginx\nversion: 1.2.3\nowner:\n  github: elastic/integrations\n"
MATTERMOST = json.dumps({"id": "com.acme.demo", "version": "0.3.0", "name": "Demo"})


def make_zip(path: Path, files: dict[str, str | bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return path


def make_tar(path: Path, files: dict[str, str | bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        for name, data in files.items():
            raw = data.encode() if isinstance(data, str) else data
            info = tarfile.TarInfo(name)
            info.size = len(raw)
            tf.addfile(info, io.BytesIO(raw))
    return path


# -- the three kinds, where they live ---------------------------------------------------------------------------------


def test_dify_manifest_at_the_root(tmp_path: Path) -> None:
    m = read_manifest(make_zip(tmp_path / "a.difypkg", {"manifest.yaml": DIFY, "main.py": "x"}))
    assert m == PackageManifest("dify", "hello", "1.0.0", "acme", "manifest.yaml", {})
    assert m is not None and m.root == "" and m.doc["type"] == "plugin"


def test_elastic_manifest_one_directory_down(tmp_path: Path) -> None:
    pkg = make_zip(
        tmp_path / "nginx-1.2.3.zip", {"nginx-1.2.3/manifest.yml": ELASTIC, "nginx-1.2.3/docs/README.md": "x"}
    )
    m = read_manifest(pkg)
    assert m is not None and (m.kind, m.name, m.version, m.author) == (
        "elastic",
        "nginx",
        "1.2.3",
        "elastic/integrations",
    )
    assert (m.entry, m.root) == ("nginx-1.2.3/manifest.yml", "nginx-1.2.3")


@pytest.mark.parametrize("layout", ["root", "id-dir"])
@pytest.mark.parametrize("container", ["tar", "zip"])
def test_mattermost_plugin_json(tmp_path: Path, layout: str, container: str) -> None:
    entry = "plugin.json" if layout == "root" else "com.acme.demo/plugin.json"
    files: dict[str, str | bytes] = {entry: MATTERMOST, entry.replace("plugin.json", "server/plugin.exe"): b"\x7fELF"}
    pkg = (make_tar if container == "tar" else make_zip)(tmp_path / f"p.{container}", files)
    m = read_manifest(pkg)
    assert m is not None and (m.kind, m.name, m.version, m.author, m.entry) == (
        "mattermost",
        "com.acme.demo",
        "0.3.0",
        None,
        entry,
    )


def test_plugin_json_keys_match_case_insensitively_as_in_go(tmp_path: Path) -> None:
    m = parse_manifest(b'{"ID": "com.acme.demo", "Version": "1.0.0"}', "plugin.json", source="p")
    assert (m.name, m.version) == ("com.acme.demo", "1.0.0")
    with pytest.raises(MalformedError, match="duplicate key") as e:
        parse_manifest(b'{"id": "a", "Id": "b", "version": "1.0.0"}', "plugin.json", source="p.tar.gz")
    assert e.value.subject == "p.tar.gz:plugin.json"


def test_no_manifest_and_opaque_files(tmp_path: Path) -> None:
    assert read_manifest(make_zip(tmp_path / "x.zip", {"README": "x", "a/b/plugin.json": MATTERMOST})) is None
    blob = tmp_path / "tool.bin"
    blob.write_bytes(b"\x00binary")
    assert read_manifest(blob) is None
    assert read_manifest(make_tar(tmp_path / "x.tar.gz", {"README": "x"})) is None


def test_candidates_are_files_at_most_one_directory_down() -> None:
    assert is_manifest_path("manifest.yaml") and is_manifest_path("x/plugin.json")
    assert not is_manifest_path("a/b/manifest.yml") and not is_manifest_path("Plugin.json")
    assert choose_manifest([("plugin.json", True), ("x", True)], source="p") is None


# -- ambiguity ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "files",
    [
        {"manifest.yaml": DIFY, "plugin.json": MATTERMOST},
        {"manifest.yaml": DIFY, "manifest.yml": ELASTIC},
        {"manifest.yml": ELASTIC, "docs/manifest.yml": ELASTIC},
        {"p/manifest.yml": ELASTIC, "p/plugin.json": MATTERMOST},
        {"a/manifest.yml": ELASTIC, "b/manifest.yml": ELASTIC},
    ],
)
@pytest.mark.parametrize("container", ["tar", "zip"])
def test_two_manifests_are_ambiguous(tmp_path: Path, files: dict[str, str | bytes], container: str) -> None:
    pkg = (make_tar if container == "tar" else make_zip)(tmp_path / f"x.{container}", files)
    with pytest.raises(UnsafeArchiveError, match="ambiguous") as e:
        read_manifest(pkg)
    assert all(name in e.value.message for name in files)
    assert e.value.subject == f"{pkg}:{sorted(files)[0]}" or e.value.subject.startswith(f"{pkg}:")  # type: ignore[union-attr]


@pytest.mark.parametrize("name", ["Plugin.json", "x/MANIFEST.yml", "Manifest.yaml"])
def test_a_manifest_name_in_other_case_is_refused(tmp_path: Path, name: str) -> None:
    pkg = make_zip(tmp_path / "x.zip", {"manifest.yml": ELASTIC, name: "x"} if name == "Plugin.json" else {name: "x"})
    with pytest.raises(UnsafeArchiveError, match="other letter case") as e:
        read_manifest(pkg)
    assert e.value.subject == f"{pkg}:{name}"


def test_a_root_manifest_wins_over_another_kind_below(tmp_path: Path) -> None:
    pkg = make_zip(tmp_path / "x.zip", {"manifest.yaml": DIFY, "vendor/plugin.json": MATTERMOST})
    m = read_manifest(pkg)
    assert m is not None and m.kind == "dify"


@pytest.mark.parametrize("container", ["tar", "zip"])
def test_a_manifest_below_must_hold_the_whole_package(tmp_path: Path, container: str) -> None:
    files: dict[str, str | bytes] = {"com.acme.demo/plugin.json": MATTERMOST, "other/evil.sh": "x"}
    pkg = (make_tar if container == "tar" else make_zip)(tmp_path / f"x.{container}", files)
    with pytest.raises(MalformedError, match="not the package root") as e:
        read_manifest(pkg)
    assert e.value.subject == f"{pkg}:com.acme.demo/plugin.json"


# -- typed, bounded parsing ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("entry", "text", "field"),
    [
        ("manifest.yml", "name: nginx\nversion: 1.10\n", "'version'"),  # PyYAML: 1.1; Go: "1.10"
        ("manifest.yaml", "name: hello\nversion: [1, 0]\n", "'version'"),
        ("manifest.yaml", "name: 12\nversion: 1.0.0\n", "'name'"),
        ("manifest.yaml", "name: hello\nversion: 1.0.0\nauthor: 007\n", "'author'"),
        ("manifest.yaml", "name: true\nversion: 1.0.0\n", "'name'"),
        ("plugin.json", '{"id": "x", "version": 1}', "'version'"),
        ("plugin.json", '{"id": ["x"], "version": "1"}', "'id'"),
        ("manifest.yaml", "version: 1.0.0\n", "no 'name'"),
        ("manifest.yaml", "name:\nversion: 1.0.0\n", "no 'name'"),
        ("manifest.yaml", "name: ''\nversion: 1.0.0\n", "empty"),
        ("plugin.json", '{"version": "1"}', "no 'id'"),
    ],
)
def test_name_and_version_must_be_strings(entry: str, text: str, field: str) -> None:
    with pytest.raises(MalformedError) as e:
        parse_manifest(text.encode(), entry, source="pkg.zip")
    assert field in e.value.message and e.value.subject == f"pkg.zip:{entry}"


@pytest.mark.parametrize(
    ("entry", "data"),
    [
        ("manifest.yaml", b"- a\n- b\n"),
        ("plugin.json", b'["id"]'),
        ("plugin.json", b"\xef\xbb\xbf" + MATTERMOST.encode()),  # a BOM: Go's decoder refuses it
        ("plugin.json", MATTERMOST.encode("utf-16")),  # json.loads would guess UTF-16; Go reads UTF-8 only
        ("plugin.json", b'{"id": "x", "version": "1.0.0",'),
        ("manifest.yaml", b"name: a\nname: b\nversion: 1.0.0\n"),  # duplicate key: Go's yaml.v3 refuses it
        ("manifest.yaml", b"name: a\nversion: 1.0.0\n---\nname: b\n"),
        ("manifest.yaml", b"name: a\nversion: 1.0.0\nx: " + b"[" * 10_000 + b"]" * 10_000 + b"\n"),
        ("plugin.json", b'{"id": "a", "version": "1", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"),
        ("manifest.yaml", b"name: a\nversion: 1.0.0\nx: '" + b"y" * (1 << 20) + b"'\n"),
    ],
)
def test_unusable_documents_are_malformed_naming_the_file(entry: str, data: bytes) -> None:
    with pytest.raises(MalformedError) as e:
        parse_manifest(data, entry, source="pkg")
    assert e.value.subject == f"pkg:{entry}"


@pytest.mark.parametrize("entry", ["manifest.yaml", "manifest.yml"])
def test_yaml_alias_bomb_is_refused_quickly(tmp_path: Path, entry: str) -> None:
    levels = ["a: &a [x,x,x,x,x,x,x,x,x]"] + [
        f"{chr(98 + i)}: &{chr(98 + i)} [{','.join(['*' + chr(97 + i)] * 9)}]" for i in range(8)
    ]
    bomb = "\n".join(levels) + "\nname: demo\nversion: 1.0.0\n"
    pkg = make_zip(tmp_path / "bomb.zip", {entry: bomb})
    assert pkg.stat().st_size < 2000
    start = time.monotonic()
    with pytest.raises(MalformedError) as e:
        read_manifest(pkg)
    assert time.monotonic() - start < 0.5
    assert e.value.subject == f"{pkg}:{entry}"


def test_oversized_manifest_is_malformed(tmp_path: Path) -> None:
    big = "name: a\nversion: 1.0.0\n#" + os.urandom(1 << 19).hex() + "\n"  # incompressible: no ratio refusal
    for pkg in (
        make_zip(tmp_path / "big.zip", {"manifest.yml": big}),
        make_tar(tmp_path / "big.tgz", {"manifest.yml": big}),
    ):
        with pytest.raises(MalformedError, match="at most") as e:
            read_manifest(pkg)
        assert e.value.subject == f"{pkg}:manifest.yml"


def test_manifest_from_an_open_zip_for_format_modules(tmp_path: Path) -> None:
    pkg = make_zip(tmp_path / "a.difypkg", {"manifest.yaml": DIFY})
    with ZipArchive.open(pkg) as archive:
        m = manifest_from_zip(archive)
    assert m is not None and m.kind == "dify" and m.author == "acme"


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300), st.sampled_from(["manifest.yaml", "manifest.yml", "plugin.json"]))
def test_any_bytes_give_a_manifest_or_a_signery_error(data: bytes, entry: str) -> None:
    try:
        m = parse_manifest(data, entry, source="p")
    except SigneryError:
        return
    assert isinstance(m.name, str) and isinstance(m.version, str)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.sampled_from("ab:[]{}&*!- \n'\"1.\t#,?|>"), max_size=120))
def test_yaml_shaped_text_gives_a_manifest_or_a_signery_error(text: str) -> None:
    with contextlib.suppress(SigneryError):
        parse_manifest(("name: a\nversion: '1'\n" + text).encode(), "manifest.yaml", source="p")


# -- versions -------------------------------------------------------------------------------------------------------


def test_semver_precedence_of_the_specification() -> None:
    # semver.org 2.0.0, section 11, in order.
    ordered = [
        "1.0.0-alpha",
        "1.0.0-alpha.1",
        "1.0.0-alpha.beta",
        "1.0.0-beta",
        "1.0.0-beta.2",
        "1.0.0-beta.11",
        "1.0.0-rc.1",
        "1.0.0",
        "2.0.0",
        "2.1.0",
        "2.1.1",
    ]
    assert sorted(reversed(ordered), key=Version) == ordered
    assert Version("1.10.0") > Version("1.9.9") and Version("0.0.10") > Version("0.0.9")


def test_prerelease_identifiers() -> None:
    assert Version("1.0.0-2") < Version("1.0.0-10")  # numeric identifiers compare as numbers
    assert Version("1.0.0-10") < Version("1.0.0-1a")  # numeric before alphanumeric
    assert Version("1.0.0-Z") < Version("1.0.0-a")  # ASCII order
    assert Version("1.0.0-a.b") > Version("1.0.0-a")  # more identifiers after fewer
    assert Version("1.0.0-rc.1").prerelease and not Version("1.0.0").prerelease
    assert Version("1.0.0-x-y.0").pre == ("x-y", "0")


def test_build_metadata_is_not_precedence() -> None:
    a, b = Version("1.0.0+build.1"), Version("1.0.0+exp.sha.5114f85")
    assert a == b and hash(a) == hash(b) and a.key == b.key == "1.0.0"
    assert a.build == "build.1" and str(a) == "1.0.0+build.1"
    assert Version("1.0.0-rc.1+x") < Version("1.0.0") and Version("1.0.0-rc.1+x").key == "1.0.0-rc.1"


def test_four_part_versions_as_dify_writes_them() -> None:
    ordered = ["1.2.3", "1.2.3.0", "1.2.3.1", "1.2.3.10", "1.2.4-rc.1", "1.2.4", "1.2.4.1"]
    assert sorted(reversed(ordered), key=Version) == ordered
    assert Version("0.0.1.2").numbers == (0, 0, 1, 2)
    assert Version("1.2.3.4-beta").prerelease and Version("1.2.3.4-beta") < Version("1.2.3.4")
    assert Version("1.2.3") != Version("1.2.3.0")  # two texts, two versions: each is its own registry slot


def test_equal_exactly_when_the_key_is_the_same() -> None:
    texts = ["1.0.0", "1.0.0+a", "1.0.0.0", "1.0.0-0", "1.0.0-0+b", "1.0.0-a", "0.1.0"]
    for x in texts:
        for y in texts:
            assert (Version(x) == Version(y)) == (Version(x).key == Version(y).key), (x, y)


@pytest.mark.parametrize(
    "bad",
    [
        "v1.2.3",  # no prefix: not a semantic version, and no host reads one
        "V1.2.3",
        "1.0",  # two parts
        "1",
        "1.2.3.4.5",  # five
        "01.0.0",  # leading zeros: two spellings of one number
        "1.0.00",
        "1.2.3.04",
        "1.0.0-01",
        "1.0.0-",
        "1.0.0+",
        "1.0.0-a..b",
        "1.0.0-a_b",  # underscore: not a semver identifier character
        "1.0.0 ",
        " 1.0.0",
        "1.0.0\n",
        "",
        "1.0.0-" + "a" * MAX_VERSION_LENGTH,  # over the length bound
        "١.٢.٣",  # Arabic-Indic digits: Python's \d matches them (the old parsers read "1١.0.0" as 11.0.0)
        "1١.0.0",
    ],
)
def test_refused_versions(bad: str) -> None:
    with pytest.raises(MalformedError, match="not a version") as err:
        Version(bad)
    assert err.value.subject == bad[:MAX_VERSION_LENGTH]
    assert Version.parse(bad) is None


def test_a_version_that_is_not_a_string_is_refused() -> None:
    with pytest.raises(MalformedError):
        Version(1.1)  # type: ignore[arg-type]


def test_latest_prefers_releases() -> None:
    assert latest_version(["1.0.0", "2.0.0-rc.1", "1.5.0"]) == "1.5.0"
    assert latest_version(["2.0.0-rc.1", "2.0.0-beta"]) == "2.0.0-rc.1"
    assert latest_version(["1.2.3", "1.2.3.1"]) == "1.2.3.1"
    assert latest_version([]) is None
    with pytest.raises(MalformedError):
        latest_version(["1.0.0", "v2.0.0"])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 30), st.integers(0, 30), st.integers(0, 30)), min_size=2, max_size=8))
def test_release_order_is_numeric_tuple_order(parts: list[tuple[int, int, int]]) -> None:
    texts = [".".join(map(str, p)) for p in parts]
    assert [Version(t).numbers for t in sorted(texts, key=Version)] == sorted(parts)
