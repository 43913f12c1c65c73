"""Package metadata detection and vetting of uploads (traversal, links, duplicates, bombs)."""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest

from signery.errors import MalformedError, PolicyViolationError, UnsafeArchiveError
from signery.registry.metadata import detect_metadata

from .conftest import dify_package, make_zip, mattermost_bundle, tar_with


def test_dify_manifest(tmp_path: Path) -> None:
    meta = detect_metadata(dify_package(tmp_path, "demo", "1.2.3"))
    assert (meta.name, meta.version, meta.source) == ("demo", "1.2.3", "manifest.yaml")


def test_elastic_manifest_one_level_down(tmp_path: Path) -> None:
    pkg = make_zip(tmp_path / "nginx-1.0.0.zip", {"nginx-1.0.0/manifest.yml": "name: nginx\nversion: 1.0.0\n"})
    assert detect_metadata(pkg).name == "nginx"


def test_mattermost_plugin_json(tmp_path: Path) -> None:
    meta = detect_metadata(mattermost_bundle(tmp_path, "com.acme.demo", "0.3.0"))
    assert (meta.name, meta.version) == ("com.acme.demo", "0.3.0")


def test_opaque_file_needs_name_and_version(tmp_path: Path) -> None:
    blob = tmp_path / "tool.bin"
    blob.write_bytes(b"\x00binary")
    with pytest.raises(MalformedError):
        detect_metadata(blob)
    assert detect_metadata(blob, name="tool", version="1.0.0").name == "tool"


def test_package_claiming_another_name_is_refused(tmp_path: Path) -> None:
    with pytest.raises(PolicyViolationError) as err:
        detect_metadata(dify_package(tmp_path, "evil"), name="demo", version="1.0.0")
    assert "manifest.yaml" in (err.value.subject or "")
    with pytest.raises(PolicyViolationError):
        detect_metadata(dify_package(tmp_path, "demo", "1.0.0"), name="demo", version="9.9.9")


def test_ambiguous_manifests_refused(tmp_path: Path) -> None:
    pkg = make_zip(
        tmp_path / "x.zip",
        {"a/manifest.yml": "name: a\nversion: 1.0.0\n", "b/manifest.yml": "name: b\nversion: 1.0.0\n"},
    )
    with pytest.raises(UnsafeArchiveError):
        detect_metadata(pkg)


def test_yaml_alias_bomb_refused(tmp_path: Path) -> None:
    # The one manifest reader (signery.package) refuses aliases as malformed, naming the manifest.
    bomb = "a: &a [x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a]\nname: demo\nversion: 1.0.0\n"
    with pytest.raises(MalformedError) as err:
        detect_metadata(make_zip(tmp_path / "x.zip", {"manifest.yaml": bomb}))
    assert err.value.subject == "x.zip:manifest.yaml" and "YAML" in err.value.message


def test_zip_traversal_and_duplicates_refused(tmp_path: Path) -> None:
    manifest = "name: demo\nversion: 1.0.0\n"
    with pytest.raises(UnsafeArchiveError):
        detect_metadata(make_zip(tmp_path / "t.zip", {"manifest.yaml": manifest, "../../etc/evil": "x"}))
    dup = tmp_path / "d.zip"
    import warnings
    import zipfile

    with warnings.catch_warnings(), zipfile.ZipFile(dup, "w") as z:
        warnings.simplefilter("ignore")
        z.writestr("manifest.yaml", manifest)
        z.writestr("manifest.yaml", "name: other\nversion: 1.0.0\n")
    with pytest.raises(UnsafeArchiveError):
        detect_metadata(dup)


def _info(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    return info


@pytest.mark.parametrize(
    ("members", "why"),
    [
        ([_info("p/plugin.json"), _info("../../escape")], "traversal"),
        ([_info("p/plugin.json"), _info("/etc/passwd")], "absolute"),
        ([_info("p/plugin.json"), _info("p/link", tarfile.SYMTYPE, "/etc/passwd")], "symlink"),
        ([_info("p/plugin.json"), _info("p/hard", tarfile.LNKTYPE, "p/plugin.json")], "hardlink"),
        ([_info("p/plugin.json"), _info("p/dev", tarfile.CHRTYPE)], "device"),
        ([_info("p/plugin.json"), _info("p/x"), _info("p/X")], "duplicate"),
    ],
)
def test_tar_attacks_refused(tmp_path: Path, members: list[tarfile.TarInfo], why: str) -> None:
    data = {"p/plugin.json": b'{"id": "p", "version": "1.0.0"}', "p/x": b"1", "p/X": b"2"}
    pkg = tar_with(tmp_path / f"{why}.tar.gz", members, data)
    with pytest.raises(UnsafeArchiveError):
        detect_metadata(pkg)


def test_gzip_bomb_refused(tmp_path: Path) -> None:
    path = tmp_path / "bomb.tar.gz"
    with tarfile.open(path, "w:gz", compresslevel=9) as tar:
        info = tarfile.TarInfo("p/zeros")
        info.size = 100 << 20

        class Zeros:
            def read(self, n: int) -> bytes:
                return b"\0" * n

        tar.addfile(info, Zeros())  # type: ignore[arg-type]
    assert path.stat().st_size < (1 << 20)
    with pytest.raises(UnsafeArchiveError):
        detect_metadata(path, name="p", version="1.0.0")


def test_non_string_version_refused_naming_field_and_file(tmp_path: Path) -> None:
    pkg = make_zip(tmp_path / "nginx.zip", {"nginx-1.10/manifest.yml": "name: nginx\nversion: 1.10\n"})
    with pytest.raises(MalformedError) as err:
        detect_metadata(pkg)
    assert err.value.subject == "nginx.zip:nginx-1.10/manifest.yml" and "'version'" in err.value.message


@pytest.mark.parametrize(
    "files",
    [
        {"manifest.yaml": "name: a\nversion: 1.0.0\n", "plugin.json": '{"id": "b", "version": "1.0.0"}'},
        {"manifest.yml": "name: a\nversion: 1.0.0\n", "x/manifest.yml": "name: b\nversion: 1.0.0\n"},
    ],
)
def test_two_manifests_are_ambiguous(tmp_path: Path, files: dict[str, bytes | str]) -> None:
    with pytest.raises(UnsafeArchiveError, match="ambiguous") as err:
        detect_metadata(make_zip(tmp_path / "x.zip", files))
    assert all(name in err.value.message for name in files)


def test_manifest_one_down_beside_other_top_level_entries_refused(tmp_path: Path) -> None:
    pkg = make_zip(tmp_path / "x.zip", {"a/manifest.yml": "name: a\nversion: 1.0.0\n", "evil.py": "x"})
    with pytest.raises(MalformedError) as err:
        detect_metadata(pkg)
    assert err.value.subject == "x.zip:a/manifest.yml"


def test_second_gzip_member_refused_like_the_installer(tmp_path: Path) -> None:
    """The registry vets uploads with the installer's tar reader: what Go would read in a second member counts."""
    import gzip
    import io

    good = mattermost_bundle(tmp_path, "com.acme.demo", "0.3.0")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        tar.addfile(_info("com.acme.demo/evil", tarfile.SYMTYPE, "/etc/passwd"))
    evil = tmp_path / "evil.tar.gz"
    evil.write_bytes(good.read_bytes() + gzip.compress(buf.getvalue()))
    with pytest.raises(UnsafeArchiveError, match="second gzip member") as err:
        detect_metadata(evil)
    assert err.value.subject == "evil.tar.gz"
