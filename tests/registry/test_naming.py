from __future__ import annotations

import pytest

from signery import package
from signery.errors import MalformedError
from signery.registry import naming
from signery.registry.naming import Version, check_filename, check_name, check_signature_filename, latest_version


def test_the_registry_uses_the_one_version_type() -> None:
    """signery.package.Version is the registry's too: what the installer refuses, the registry refuses."""
    assert naming.Version is package.Version and naming.latest_version is package.latest_version
    assert naming.MAX_VERSION_LENGTH == package.MAX_VERSION_LENGTH


@pytest.mark.parametrize("bad", ["1.0", "01.0.0", "1.0.0-", "v1.0.0", "1.0.0 ", "", "1.0.0-01"])
def test_bad_versions_refused(bad: str) -> None:
    with pytest.raises(MalformedError):
        Version(bad)


def test_four_part_versions_have_their_own_slot() -> None:
    assert Version("1.2.3.4").key == "1.2.3.4" and Version("1.2.3.4+b").key == "1.2.3.4"
    assert latest_version(["1.2.3", "1.2.3.4", "1.2.4-rc.1"]) == "1.2.3.4"


@pytest.mark.parametrize("bad", ["../x", "a/b", ".hidden", "a..b", "", "x" * 200, "a b", "-x", "x\n"])
def test_bad_names_refused(bad: str) -> None:
    with pytest.raises(MalformedError):
        check_name(bad)


@pytest.mark.parametrize("bad", ["../evil.sig", "dir/x.sig", ".x.sig", "x\\y.sig", "x.txt", "x" * 300 + ".sig"])
def test_bad_signature_filenames_refused(bad: str) -> None:
    with pytest.raises(MalformedError):
        check_signature_filename(bad)


def test_good_names() -> None:
    assert check_name("com.mattermost.demo-plugin") == "com.mattermost.demo-plugin"
    assert check_filename("nginx-1.2.0.zip") == "nginx-1.2.0.zip"
    assert check_signature_filename("nginx-1.2.0.zip.signery.json")
