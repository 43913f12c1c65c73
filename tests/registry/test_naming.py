from __future__ import annotations

import pytest

from signery.errors import MalformedError
from signery.registry.naming import Version, check_filename, check_name, check_signature_filename, latest_version


def test_semver_precedence() -> None:
    ordered = ["1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-alpha.beta", "1.0.0-beta", "1.0.0-beta.2", "1.0.0-rc.1", "1.0.0"]
    assert sorted(ordered, key=Version) == ordered
    assert Version("1.10.0") > Version("1.9.9")
    assert Version("1.0.0+build.1").key == "1.0.0"


@pytest.mark.parametrize("bad", ["1.0", "01.0.0", "1.0.0-", "v1.0.0", "1.0.0 ", "", "1.0.0-01"])
def test_bad_versions_refused(bad: str) -> None:
    with pytest.raises(MalformedError):
        Version(bad)


def test_latest_prefers_releases() -> None:
    assert latest_version(["1.0.0", "2.0.0-rc.1", "1.5.0"]) == "1.5.0"
    assert latest_version(["2.0.0-rc.1", "2.0.0-beta"]) == "2.0.0-rc.1"
    assert latest_version([]) is None


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


def test_head_revision_constant_matches_the_migrations() -> None:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from signery.registry.db import HEAD_REVISION

    cfg = Config()
    cfg.set_main_option("script_location", "signery.registry:migrations")
    assert ScriptDirectory.from_config(cfg).get_current_head() == HEAD_REVISION
