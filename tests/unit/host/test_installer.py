"""The plugin host: installs that follow the policy, attacks refused with nothing written, interrupted installs
that leave the old version in place, re-checks, removal."""

from __future__ import annotations

import io
import json
import os
import stat
import tarfile
import zipfile
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from signery import openpgp
from signery.errors import (
    ConfigError,
    MalformedError,
    PolicyViolationError,
    Reason,
    UnsafeArchiveError,
    UsageError,
    VerificationError,
)
from signery.formats import dify
from signery.formats import openpgp as pgp_format
from signery.host import HostLimits, check_installed, install_package, list_installed, remove_plugin
from signery.keys import FileSigner, generate_private_key
from signery.policy import Policy, load_policy
from signery.trust import Constraints, TrustSet, load_trusted_key_file, trusted_key_from_public

FORCED = Policy()
LAX = Policy(force_verifying_signature=False)
CREATED = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def key() -> rsa.RSAPrivateKey:
    k = generate_private_key("rsa-2048")
    assert isinstance(k, rsa.RSAPrivateKey)
    return k


@pytest.fixture()
def trust(key: rsa.RSAPrivateKey) -> TrustSet:
    return TrustSet([trusted_key_from_public(key.public_key(), name="acme")])


@pytest.fixture()
def plugins(tmp_path: Path) -> Path:
    return tmp_path / "plugins"


def make_dify(
    path: Path, *, version: str = "1.0.0", name: str = "hello", author: str = "acme", extra: bytes = b""
) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("manifest.yaml", f"version: {version}\ntype: plugin\nauthor: {author}\nname: {name}\n")
        zf.writestr("main.py", b"print('hello " + version.encode() + b"')\n" + extra)
        zf.writestr("tools/hello.yaml", b"identity: {name: hello}\n")
    return path


def signed(tmp_path: Path, key: rsa.RSAPrivateKey, **kw: str) -> Path:
    version = kw.get("version", "1.0.0")
    src = make_dify(tmp_path / f"src-{version}-{kw.get('author', 'acme')}.difypkg", **kw)  # type: ignore[arg-type]
    return dify.sign(src, FileSigner(key), output=tmp_path / f"hello-{version}-{kw.get('author', 'acme')}.difypkg")


def only_state(plugins: Path) -> list[str]:
    """Everything in the plugins directory, relative; a refused install into a new directory leaves not even the
    directory (checked by the callers that compare with :data:`NOTHING`)."""
    if not plugins.exists():
        return []
    return sorted(p.relative_to(plugins).as_posix() for p in plugins.rglob("*"))


NOTHING: list[str] = []  # no plugins directory, no .signery/, no lock, no staging file


# -- the policy at install time --------------------------------------------------------------------------------------


def test_verified_install_records_the_signer(
    tmp_path: Path, plugins: Path, key: rsa.RSAPrivateKey, trust: TrustSet
) -> None:
    pkg = signed(tmp_path, key)
    record = install_package(pkg, plugins_dir=plugins, policy=FORCED, trust=trust)
    assert record.status == "verified" and record.signer_key_name == "acme" and record.version == "1.0.0"
    assert record.signer_key_id == trust.__iter__().__next__().key_id and record.signature_format == "dify"
    assert record.category == "langgenius" and record.author == "acme"
    assert (plugins / "hello" / "main.py").read_bytes().startswith(b"print('hello 1.0.0')")
    assert (plugins / "hello" / ".verification.dify.json").is_file()
    assert [r.name for r in list_installed(plugins)] == ["hello"]
    assert all(o.ok for o in check_installed(plugins, policy=FORCED, trust=trust))


def test_official_vector_installs_with_no_trust_store(vectors: Path, plugins: Path) -> None:
    record = install_package(
        vectors / "dify" / "langgenius-agent_0.0.14.difypkg", plugins_dir=plugins, policy=FORCED, trust=TrustSet()
    )
    assert record.status == "verified" and record.signer_key_name == "dify-marketplace" and record.name == "agent"


@pytest.mark.parametrize("case", ["unsigned", "unknown-key", "tampered"])
def test_forced_refusals_name_reason_and_fault(
    tmp_path: Path, plugins: Path, key: rsa.RSAPrivateKey, trust: TrustSet, case: str
) -> None:
    if case == "unsigned":
        pkg = make_dify(tmp_path / "hello.difypkg")
    elif case == "unknown-key":
        pkg = dify.sign(make_dify(tmp_path / "s.difypkg"), FileSigner(generate_private_key("rsa-2048")))
    else:
        good = signed(tmp_path, key)
        pkg = tmp_path / "tampered.difypkg"
        with zipfile.ZipFile(good) as zin, zipfile.ZipFile(pkg, "w") as zout:
            for info in zin.infolist():
                data = zin.read(info)
                zout.writestr(info.filename, data + b"# evil\n" if info.filename == "main.py" else data)
            zout.comment = zin.comment
    with pytest.raises(VerificationError) as e:
        install_package(pkg, plugins_dir=plugins, policy=FORCED, trust=trust, allow_unverified=True)
    assert e.value.reason.value == case
    assert "FORCE_VERIFYING_SIGNATURE" in (e.value.hint or "") or "force_verifying_signature" in (e.value.hint or "")
    assert e.value.subject and "staging" not in e.value.subject and "staging" not in e.value.message
    assert only_state(plugins) == NOTHING


def test_not_forced_installs_unverified_with_the_reason(tmp_path: Path, plugins: Path, trust: TrustSet) -> None:
    pkg = make_dify(tmp_path / "hello.difypkg")
    with pytest.raises(VerificationError, match="--allow-unverified"):
        install_package(pkg, plugins_dir=plugins, policy=LAX, trust=trust)
    record = install_package(pkg, plugins_dir=plugins, policy=LAX, trust=trust, allow_unverified=True)
    assert record.status == "unverified" and record.reason == "unsigned" and record.signer_key_id is None
    listed = list_installed(plugins)[0]
    assert listed.status == "unverified" and listed.reason == "unsigned"
    # Once verification is forced, the check names it.
    assert check_installed(plugins, policy=LAX, trust=trust)[0].ok
    outcome = check_installed(plugins, policy=FORCED, trust=trust)[0]
    assert not outcome.ok and outcome.name == "hello" and outcome.reason is Reason.UNSIGNED


def test_config_error_comes_before_any_package(tmp_path: Path, plugins: Path) -> None:
    env = {
        "THIRD_PARTY_SIGNATURE_VERIFICATION_ENABLED": "true",
        "THIRD_PARTY_SIGNATURE_VERIFICATION_PUBLIC_KEYS": str(tmp_path / "nope.pem"),
    }
    with pytest.raises(ConfigError) as e:
        load_policy(None, env=env)
    assert e.value.exit_code == 3 and str(tmp_path / "nope.pem") in e.value.message


def test_third_party_key_from_policy(tmp_path: Path, plugins: Path, key: rsa.RSAPrivateKey) -> None:
    from cryptography.hazmat.primitives import serialization

    pem = tmp_path / "partner.public.pem"
    pem.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.PKCS1) + b"\n")
    env = {
        "THIRD_PARTY_SIGNATURE_VERIFICATION_ENABLED": "true",
        "THIRD_PARTY_SIGNATURE_VERIFICATION_PUBLIC_KEYS": str(pem),
    }
    record = install_package(
        signed(tmp_path, key), plugins_dir=plugins, policy=load_policy(None, env=env), trust=TrustSet()
    )
    assert record.status == "verified" and record.signer_key_name == "third-party:partner.public.pem"


def test_key_limited_to_a_category_cannot_claim_more(tmp_path: Path, plugins: Path, key: rsa.RSAPrivateKey) -> None:
    limited = TrustSet(
        [trusted_key_from_public(key.public_key(), name="partner", constraints=Constraints(categories=("partner",)))]
    )
    with pytest.raises(VerificationError) as e:  # signed claiming "langgenius"
        install_package(signed(tmp_path, key), plugins_dir=plugins, policy=LAX, trust=limited, allow_unverified=True)
    assert e.value.reason is Reason.POLICY_VIOLATION and "partner" in e.value.message
    assert only_state(plugins) == NOTHING


def test_key_limited_to_names_cannot_vouch_for_another_plugin_by_claiming_a_name(tmp_path: Path, plugins: Path) -> None:
    from signery.formats import native

    k = generate_private_key("ed25519")
    limited = TrustSet(
        [trusted_key_from_public(k.public_key(), name="acme", constraints=Constraints(names=("acme-*",)))]
    )
    src = tmp_path / "evil.zip"
    with zipfile.ZipFile(src, "w") as zf:
        zf.writestr("plugin.json", json.dumps({"id": "evil", "version": "1.0.0"}))
        zf.writestr("server.py", b"steal()\n")
    # The claim is the signer's own statement: it says acme-tools, the package installs as "evil".
    pkg = native.sign(src, FileSigner(k), claims={"name": "acme-tools"}, output=tmp_path / "evil.signed.zip")
    with pytest.raises(VerificationError) as e:
        install_package(pkg, plugins_dir=plugins, policy=FORCED, trust=limited)
    assert e.value.reason is Reason.POLICY_VIOLATION and "evil" in e.value.message
    assert only_state(plugins) == NOTHING
    good = tmp_path / "acme-tools.zip"
    with zipfile.ZipFile(good, "w") as zf:
        zf.writestr("plugin.json", json.dumps({"id": "acme-tools", "version": "1.0.0"}))
    pkg = native.sign(good, FileSigner(k), claims={"name": "acme-tools"}, output=tmp_path / "acme.signed.zip")
    record = install_package(pkg, plugins_dir=plugins, policy=FORCED, trust=limited)
    assert record.status == "verified" and record.name == "acme-tools"
    assert all(o.ok for o in check_installed(plugins, policy=FORCED, trust=limited))


# -- upgrades, downgrades, names -------------------------------------------------------------------------------------


def test_upgrade_and_downgrade(tmp_path: Path, plugins: Path, key: rsa.RSAPrivateKey, trust: TrustSet) -> None:
    install_package(signed(tmp_path, key, version="1.2.0"), plugins_dir=plugins, policy=FORCED, trust=trust)
    with pytest.raises(PolicyViolationError, match="older"):
        install_package(signed(tmp_path, key, version="1.1.9"), plugins_dir=plugins, policy=FORCED, trust=trust)
    assert list_installed(plugins)[0].version == "1.2.0"
    install_package(signed(tmp_path, key, version="1.10.0"), plugins_dir=plugins, policy=FORCED, trust=trust)
    assert list_installed(plugins)[0].version == "1.10.0"
    r = install_package(
        signed(tmp_path, key, version="1.0.0"), plugins_dir=plugins, policy=FORCED, trust=trust, allow_downgrade=True
    )
    assert r.version == "1.0.0" and b"1.0.0" in (plugins / "hello" / "main.py").read_bytes()
    assert sorted(p.name for p in plugins.iterdir()) == [".signery", "hello"]  # no leftovers of the swaps


def test_prerelease_is_older_than_release(
    tmp_path: Path, plugins: Path, key: rsa.RSAPrivateKey, trust: TrustSet
) -> None:
    install_package(signed(tmp_path, key, version="2.0.0"), plugins_dir=plugins, policy=FORCED, trust=trust)
    with pytest.raises(PolicyViolationError):
        install_package(signed(tmp_path, key, version="2.0.0-rc.1"), plugins_dir=plugins, policy=FORCED, trust=trust)


def test_four_part_versions_order_after_the_three_parts_they_extend(
    tmp_path: Path, plugins: Path, key: rsa.RSAPrivateKey, trust: TrustSet
) -> None:
    install_package(signed(tmp_path, key, version="1.2.3"), plugins_dir=plugins, policy=FORCED, trust=trust)
    install_package(signed(tmp_path, key, version="1.2.3.1"), plugins_dir=plugins, policy=FORCED, trust=trust)
    assert list_installed(plugins)[0].version == "1.2.3.1"
    with pytest.raises(PolicyViolationError, match="older"):
        install_package(signed(tmp_path, key, version="1.2.3.0"), plugins_dir=plugins, policy=FORCED, trust=trust)
    install_package(signed(tmp_path, key, version="1.2.4"), plugins_dir=plugins, policy=FORCED, trust=trust)
    assert list_installed(plugins)[0].version == "1.2.4"


@pytest.mark.parametrize("version", ["v1.2.3", "1.2.3.4.5", "01.2.3", "1.2.3_beta"])
def test_a_version_the_registry_refuses_is_refused_at_install(
    tmp_path: Path, plugins: Path, key: rsa.RSAPrivateKey, trust: TrustSet, version: str
) -> None:
    """One version rule: signery.package.Version decides for the installer and the registry alike."""
    pkg = signed(tmp_path, key, version=version)
    with pytest.raises(MalformedError, match="not a version") as err:
        install_package(pkg, plugins_dir=plugins, policy=FORCED, trust=trust)
    assert err.value.subject == f"{pkg}:manifest.yaml" and repr(version) in err.value.message
    assert only_state(plugins) == NOTHING


def test_an_installed_version_that_cannot_be_ordered_needs_the_flag(
    tmp_path: Path, plugins: Path, key: rsa.RSAPrivateKey, trust: TrustSet
) -> None:
    """A record written before versions had one rule (``v1.0``): no upgrade can be ordered after it."""
    install_package(signed(tmp_path, key, version="1.0.0"), plugins_dir=plugins, policy=FORCED, trust=trust)
    record_file = plugins / ".signery" / "store" / "hello" / "record.json"
    doc = json.loads(record_file.read_text())
    record_file.write_text(json.dumps({**doc, "version": "v1.0"}))
    with pytest.raises(PolicyViolationError, match=r"cannot order the installed version 'v1\.0'") as err:
        install_package(signed(tmp_path, key, version="2.0.0"), plugins_dir=plugins, policy=FORCED, trust=trust)
    assert err.value.hint == "--allow-downgrade installs it anyway"
    r = install_package(
        signed(tmp_path, key, version="2.0.0"), plugins_dir=plugins, policy=FORCED, trust=trust, allow_downgrade=True
    )
    assert r.version == "2.0.0"


def test_another_author_cannot_take_over_a_name(
    tmp_path: Path, plugins: Path, key: rsa.RSAPrivateKey, trust: TrustSet
) -> None:
    install_package(signed(tmp_path, key), plugins_dir=plugins, policy=FORCED, trust=trust)
    with pytest.raises(PolicyViolationError, match="author"):
        install_package(
            signed(tmp_path, key, version="9.0.0", author="mallory"), plugins_dir=plugins, policy=FORCED, trust=trust
        )


def test_expected_name_and_version(tmp_path: Path, plugins: Path, key: rsa.RSAPrivateKey, trust: TrustSet) -> None:
    pkg = signed(tmp_path, key)
    with pytest.raises(PolicyViolationError, match="not the requested"):
        install_package(pkg, plugins_dir=plugins, policy=FORCED, trust=trust, expected_name="other")
    with pytest.raises(PolicyViolationError, match="not the requested"):
        install_package(pkg, plugins_dir=plugins, policy=FORCED, trust=trust, expected_version="2.0.0")
    assert only_state(plugins) == NOTHING


def test_foreign_directory_is_not_replaced(
    tmp_path: Path, plugins: Path, key: rsa.RSAPrivateKey, trust: TrustSet
) -> None:
    (plugins / "hello").mkdir(parents=True)
    (plugins / "hello" / "mine.txt").write_text("not from signery")
    with pytest.raises(UsageError, match="not installed by signery"):
        install_package(signed(tmp_path, key), plugins_dir=plugins, policy=FORCED, trust=trust)
    assert (plugins / "hello" / "mine.txt").read_text() == "not from signery"


@pytest.mark.parametrize("bad", ["../evil", ".hidden", "a/b", "x" * 200, ""])
def test_unusable_plugin_names(tmp_path: Path, plugins: Path, bad: str) -> None:
    pkg = make_dify(tmp_path / "n.difypkg", name=bad)
    with pytest.raises(MalformedError):
        install_package(pkg, plugins_dir=plugins, policy=LAX, trust=TrustSet(), allow_unverified=True)
    assert only_state(plugins) == NOTHING


# -- attacks: refused, nothing written -------------------------------------------------------------------------------


def _zip_with(path: Path, entries: list[tuple[zipfile.ZipInfo | str, bytes]]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("manifest.yaml", "version: 1.0.0\nauthor: x\nname: evil\n")
        for info, data in entries:
            zf.writestr(info, data)
    return path


def _symlink_info(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.create_system = 3
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info


ZIP_ATTACKS: dict[str, Callable[[Path], Path]] = {
    "traversal": lambda p: _zip_with(p, [("../../outside.txt", b"x")]),
    "absolute": lambda p: _zip_with(p, [("/tmp/outside.txt", b"x")]),
    "backslash": lambda p: _zip_with(p, [("..\\outside.txt", b"x")]),
    "symlink": lambda p: _zip_with(p, [(_symlink_info("link"), b"/etc/passwd")]),
    "duplicate": lambda p: _zip_with(p, [("a.py", b"1"), ("a.py", b"2")]),
    "case-duplicate": lambda p: _zip_with(p, [("A.py", b"1"), ("a.py", b"2")]),
    "bomb": lambda p: _zip_bomb(p),
}


def _zip_bomb(path: Path) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        zf.writestr("manifest.yaml", "version: 1.0.0\nauthor: x\nname: evil\n")
        zf.writestr("zeros.bin", bytes(24 << 20))  # ~1000:1
    return path


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("attack", sorted(ZIP_ATTACKS))
def test_zip_attacks_refused_with_nothing_written(tmp_path: Path, plugins: Path, attack: str) -> None:
    pkg = ZIP_ATTACKS[attack](tmp_path / "evil.difypkg")
    with pytest.raises(UnsafeArchiveError) as e:
        install_package(pkg, plugins_dir=plugins, policy=LAX, trust=TrustSet(), allow_unverified=True)
    assert e.value.reason is Reason.UNSAFE_ARCHIVE and e.value.subject
    assert only_state(plugins) == NOTHING
    assert not (tmp_path / "outside.txt").exists()


def test_zip_limits_are_enforced(tmp_path: Path, plugins: Path) -> None:
    pkg = make_dify(tmp_path / "big.difypkg", extra=b"x" * 5000)
    tight = HostLimits(max_total_size=4000)
    with pytest.raises(UnsafeArchiveError):
        install_package(pkg, plugins_dir=plugins, policy=LAX, trust=TrustSet(), allow_unverified=True, limits=tight)
    with pytest.raises(UnsafeArchiveError):
        install_package(
            pkg,
            plugins_dir=plugins,
            policy=LAX,
            trust=TrustSet(),
            allow_unverified=True,
            limits=HostLimits(max_entries=2),
        )
    with pytest.raises(UnsafeArchiveError, match="larger than"):
        install_package(
            pkg,
            plugins_dir=plugins,
            policy=LAX,
            trust=TrustSet(),
            allow_unverified=True,
            limits=HostLimits(max_package_bytes=100),
        )
    assert only_state(plugins) == NOTHING


# -- interrupted installs ---------------------------------------------------------------------------------------------


class Interrupt(Exception):
    pass


@pytest.mark.parametrize("stage", ["staged", "verified", "extracted", "swapped", "recorded"])
def test_interrupted_upgrade_keeps_the_old_version(
    tmp_path: Path, plugins: Path, key: rsa.RSAPrivateKey, trust: TrustSet, stage: str
) -> None:
    install_package(signed(tmp_path, key, version="1.0.0"), plugins_dir=plugins, policy=FORCED, trust=trust)
    before = only_state(plugins)
    old_main = (plugins / "hello" / "main.py").read_bytes()

    def fail_at(s: str) -> None:
        if s == stage:
            raise Interrupt(s)

    with pytest.raises(Interrupt):
        install_package(
            signed(tmp_path, key, version="2.0.0"), plugins_dir=plugins, policy=FORCED, trust=trust, on_stage=fail_at
        )
    assert (plugins / "hello" / "main.py").read_bytes() == old_main
    assert list_installed(plugins)[0].version == "1.0.0"
    assert only_state(plugins) == before
    assert all(o.ok for o in check_installed(plugins, policy=FORCED, trust=trust))


def test_corrupt_entry_midway_keeps_the_old_version(tmp_path: Path, plugins: Path) -> None:
    """A real failure half-way through extraction: the last entry's bytes are damaged (CRC mismatch)."""
    install_package(
        make_dify(tmp_path / "v1.difypkg"), plugins_dir=plugins, policy=LAX, trust=TrustSet(), allow_unverified=True
    )
    before = only_state(plugins)
    pkg = make_dify(tmp_path / "v2.difypkg", version="2.0.0")
    data = bytearray(pkg.read_bytes())
    with zipfile.ZipFile(pkg) as zf:
        last = zf.infolist()[-1]
        offset = last.header_offset + 30 + len(last.filename.encode()) + 1
    data[offset] ^= 0xFF
    pkg.write_bytes(bytes(data))
    with pytest.raises(VerificationError) as e:
        install_package(pkg, plugins_dir=plugins, policy=LAX, trust=TrustSet(), allow_unverified=True)
    assert e.value.reason is Reason.TAMPERED and e.value.subject == "tools/hello.yaml"
    assert only_state(plugins) == before and list_installed(plugins)[0].version == "1.0.0"


def test_unwritable_store_rolls_back_the_swapped_tree(
    tmp_path: Path, plugins: Path, key: rsa.RSAPrivateKey, trust: TrustSet
) -> None:
    """A real filesystem failure after the new files are in place: the record cannot be committed."""
    install_package(signed(tmp_path, key, version="1.0.0"), plugins_dir=plugins, policy=FORCED, trust=trust)
    store = plugins / ".signery" / "store"
    record = (store / "hello" / "record.json").read_bytes()

    # Between the swap of the files and the commit of the record, the store stops being a directory: committing the
    # record then fails inside the installer's own filesystem calls, which must put the old files back.
    def sabotage(stage: str) -> None:
        if stage == "swapped":
            store.rename(store.with_name("store-saved"))
            store.write_text("in the way")

    with pytest.raises(OSError):
        install_package(
            signed(tmp_path, key, version="2.0.0"), plugins_dir=plugins, policy=FORCED, trust=trust, on_stage=sabotage
        )
    assert b"1.0.0" in (plugins / "hello" / "main.py").read_bytes()
    store.unlink()
    store.with_name("store-saved").rename(store)
    assert (store / "hello" / "record.json").read_bytes() == record
    assert not [p for p in plugins.iterdir() if p.name.startswith(".hello")]


# -- check and remove -------------------------------------------------------------------------------------------------


def test_check_detects_tampering_and_trust_changes(
    tmp_path: Path, plugins: Path, key: rsa.RSAPrivateKey, trust: TrustSet
) -> None:
    install_package(signed(tmp_path, key), plugins_dir=plugins, policy=FORCED, trust=trust)
    assert check_installed(plugins, policy=FORCED, trust=trust)[0].ok
    out = check_installed(plugins, policy=LAX, trust=TrustSet())[0]  # key no longer trusted
    assert not out.ok and out.reason is Reason.UNKNOWN_KEY
    revoked = TrustSet([replace(next(iter(trust)), revoked=True)])
    assert check_installed(plugins, policy=LAX, trust=revoked)[0].reason is Reason.REVOKED_KEY
    (plugins / "hello" / "main.py").write_text("print('pwned')\n")
    out = check_installed(plugins, policy=FORCED, trust=trust)[0]
    assert not out.ok and out.reason is Reason.TAMPERED and out.subject and out.subject.endswith("main.py")


def test_check_detects_added_files_and_a_changed_kept_package(
    tmp_path: Path, plugins: Path, key: rsa.RSAPrivateKey, trust: TrustSet
) -> None:
    install_package(signed(tmp_path, key), plugins_dir=plugins, policy=FORCED, trust=trust)
    (plugins / "hello" / "extra.py").write_text("import os\n")
    assert check_installed(plugins, policy=FORCED, trust=trust)[0].subject.endswith("extra.py")  # type: ignore[union-attr]
    (plugins / "hello" / "extra.py").unlink()
    kept = next((plugins / ".signery" / "store" / "hello").glob("*.difypkg"))
    kept.write_bytes(kept.read_bytes() + b"x")
    out = check_installed(plugins, policy=FORCED, trust=trust)[0]
    assert out.reason is Reason.TAMPERED and out.subject == str(kept)


def test_remove(tmp_path: Path, plugins: Path, key: rsa.RSAPrivateKey, trust: TrustSet) -> None:
    install_package(signed(tmp_path, key), plugins_dir=plugins, policy=FORCED, trust=trust)
    assert remove_plugin(plugins, "hello").version == "1.0.0"
    assert list_installed(plugins) == [] and not (plugins / "hello").exists()
    with pytest.raises(UsageError, match="not installed"):
        remove_plugin(plugins, "hello")
    with pytest.raises(MalformedError):
        remove_plugin(plugins, "../etc")


# -- Mattermost bundles: .tar.gz + .sig -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pgp_key() -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.generate()


@pytest.fixture()
def pgp_trust(pgp_key: ed25519.Ed25519PrivateKey, tmp_path: Path) -> TrustSet:
    cert = openpgp.certificate_from_private_key(pgp_key, uid="Mattermost Dev <dev@example.org>", created=CREATED)
    path = tmp_path / "dev.asc"
    path.write_text(cert)
    return TrustSet([load_trusted_key_file(path, name="mm-dev").key])


def make_bundle(
    path: Path,
    *,
    plugin_id: str = "com.example.demo",
    version: str = "0.1.0",
    extra: list[tarfile.TarInfo] | None = None,
) -> Path:
    with tarfile.open(path, "w:gz") as tf:

        def add(name: str, data: bytes, mode: int = 0o644) -> None:
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), mode
            tf.addfile(info, io.BytesIO(data))

        d = tarfile.TarInfo(plugin_id)
        d.type, d.mode = tarfile.DIRTYPE, 0o755
        tf.addfile(d)
        add(f"{plugin_id}/plugin.json", json.dumps({"id": plugin_id, "version": version}).encode())
        add(f"{plugin_id}/server/dist/plugin-linux-amd64", b"\x7fELF" + version.encode(), 0o755)
        for info in extra or []:
            tf.addfile(info, io.BytesIO(b"x" * info.size) if info.isreg() else None)
    return path


def test_signed_bundle_installs(
    tmp_path: Path, plugins: Path, pgp_key: ed25519.Ed25519PrivateKey, pgp_trust: TrustSet
) -> None:
    bundle = make_bundle(tmp_path / "demo-0.1.0.tar.gz")
    pgp_format.sign(bundle, openpgp.signer_from_private_key(pgp_key, created=CREATED))  # demo-0.1.0.tar.gz.sig beside
    record = install_package(bundle, plugins_dir=plugins, policy=FORCED, trust=pgp_trust)
    assert record.status == "verified" and record.kind == "mattermost" and record.signer_key_name == "mm-dev"
    exe = plugins / "com.example.demo" / "server" / "dist" / "plugin-linux-amd64"
    assert exe.read_bytes() == b"\x7fELF0.1.0" and exe.stat().st_mode & 0o111
    assert (plugins / "com.example.demo" / "plugin.json").is_file()
    assert all(o.ok for o in check_installed(plugins, policy=FORCED, trust=pgp_trust))


def test_unsigned_bundle_refused_naming_require_plugin_signature(tmp_path: Path, plugins: Path) -> None:
    bundle = make_bundle(tmp_path / "demo.tar.gz")
    strict = load_policy(None, env={"REQUIRE_PLUGIN_SIGNATURE": "true", "FORCE_VERIFYING_SIGNATURE": "false"})
    with pytest.raises(VerificationError) as e:
        install_package(bundle, plugins_dir=plugins, policy=strict, trust=TrustSet(), allow_unverified=True)
    assert e.value.reason is Reason.UNSIGNED and "REQUIRE_PLUGIN_SIGNATURE" in e.value.message
    lax = load_policy(None, env={"REQUIRE_PLUGIN_SIGNATURE": "false"})
    record = install_package(bundle, plugins_dir=plugins, policy=lax, trust=TrustSet(), allow_unverified=True)
    assert record.status == "unverified" and record.reason == "unsigned"


def _member(name: str, kind: bytes = tarfile.REGTYPE, size: int = 1, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.size, info.linkname = kind, (size if kind == tarfile.REGTYPE else 0), linkname
    return info


TAR_ATTACKS: dict[str, list[tarfile.TarInfo]] = {
    "traversal": [_member("com.example.demo/../../outside.txt")],
    "absolute": [_member("/tmp/outside.txt")],
    "symlink": [_member("com.example.demo/link", tarfile.SYMTYPE, linkname="/etc/passwd")],
    "hardlink": [_member("com.example.demo/hard", tarfile.LNKTYPE, linkname="com.example.demo/plugin.json")],
    "fifo": [_member("com.example.demo/fifo", tarfile.FIFOTYPE)],
    "device": [_member("com.example.demo/dev", tarfile.CHRTYPE)],
    "duplicate": [_member("com.example.demo/plugin.json")],
    "case-duplicate": [_member("com.example.demo/PLUGIN.json")],
    "file-under-file": [_member("com.example.demo/plugin.json/x")],
}


@pytest.mark.parametrize("attack", sorted(TAR_ATTACKS))
def test_tar_attacks_refused_with_nothing_written(tmp_path: Path, plugins: Path, attack: str) -> None:
    bundle = make_bundle(tmp_path / "evil.tar.gz", extra=TAR_ATTACKS[attack])
    with pytest.raises(UnsafeArchiveError) as e:
        install_package(bundle, plugins_dir=plugins, policy=LAX, trust=TrustSet(), allow_unverified=True)
    assert e.value.subject
    assert only_state(plugins) == NOTHING
    assert not (tmp_path / "outside.txt").exists()


def test_tar_bomb_and_count_limits(tmp_path: Path, plugins: Path) -> None:
    bundle = make_bundle(tmp_path / "bomb.tar.gz", extra=[_member("com.example.demo/zeros", size=3 << 20)])
    with pytest.raises(UnsafeArchiveError, match="expand"):
        install_package(
            bundle,
            plugins_dir=plugins,
            policy=LAX,
            trust=TrustSet(),
            allow_unverified=True,
            limits=HostLimits(max_total_size=1 << 20),
        )
    many = make_bundle(tmp_path / "many.tar.gz", extra=[_member(f"com.example.demo/f{i}") for i in range(20)])
    with pytest.raises(UnsafeArchiveError, match="more than"):
        install_package(
            many,
            plugins_dir=plugins,
            policy=LAX,
            trust=TrustSet(),
            allow_unverified=True,
            limits=HostLimits(max_entries=10),
        )
    assert only_state(plugins) == NOTHING


def test_not_a_package(tmp_path: Path, plugins: Path) -> None:
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"hello")
    with pytest.raises(MalformedError):
        install_package(junk, plugins_dir=plugins, policy=LAX, trust=TrustSet(), allow_unverified=True)
    gz = tmp_path / "broken.tar.gz"
    gz.write_bytes(b"\x1f\x8b\x08\x00garbage")
    with pytest.raises(MalformedError):
        install_package(gz, plugins_dir=plugins, policy=LAX, trust=TrustSet(), allow_unverified=True)
    assert only_state(plugins) == NOTHING


# -- property: whatever the member names, nothing lands outside the plugin's directory ------------------------------

_NAME_PART = st.sampled_from(["..", ".", "", "a", "b.py", "/", "\\", "..\\x", "~", "C:", "é", "A", "\x00", " "])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(names=st.lists(st.lists(_NAME_PART, min_size=1, max_size=4).map("/".join), min_size=1, max_size=4))
def test_hostile_member_names_never_escape(tmp_path_factory: pytest.TempPathFactory, names: list[str]) -> None:
    root = tmp_path_factory.mktemp("prop")
    plugins = root / "plugins"
    extra = []
    for n in names:
        info = tarfile.TarInfo("com.example.demo/" + n if not n.startswith("/") else n)
        info.size = 1
        extra.append(info)
    bundle = make_bundle(root / "b.tar.gz", extra=extra)
    try:
        install_package(bundle, plugins_dir=plugins, policy=LAX, trust=TrustSet(), allow_unverified=True)
    except (UnsafeArchiveError, MalformedError):
        assert only_state(plugins) == NOTHING
    outside = [p for p in root.rglob("*") if not p.is_relative_to(plugins) and p.name not in ("b.tar.gz",)]
    assert outside == []
    for p in plugins.rglob("*"):
        assert not p.is_symlink()
        assert p.resolve().is_relative_to(plugins.resolve())


# -- modes: what the signature covers decides what is applied ---------------------------------------------------------


def _modes(root: Path) -> dict[str, int]:
    return {p.relative_to(root).as_posix(): stat.S_IMODE(p.stat().st_mode) for p in [root, *root.rglob("*")]}


def test_tar_modes_keep_the_owner_exec_bit_only(tmp_path: Path, plugins: Path) -> None:
    bundle = make_bundle(tmp_path / "b.tar.gz", extra=[_member("com.example.demo/tool.sh", size=3)])
    record = install_package(bundle, plugins_dir=plugins, policy=LAX, trust=TrustSet(), allow_unverified=True)
    modes = _modes(plugins / record.name)
    umask = os.umask(0o022)
    os.umask(umask)
    expect = {
        ".": 0o755,
        "plugin.json": 0o644,
        "server": 0o755,
        "server/dist": 0o755,
        "server/dist/plugin-linux-amd64": 0o755,  # 0755 in the signed bytes
        "tool.sh": 0o644,  # 0644 in the signed bytes
    }
    assert modes == {k: v & ~umask for k, v in expect.items()}


def test_zip_exec_bits_are_not_applied(tmp_path: Path, plugins: Path) -> None:
    pkg = tmp_path / "x.difypkg"
    with zipfile.ZipFile(pkg, "w") as zf:
        zf.writestr("manifest.yaml", "version: 1.0.0\nauthor: acme\nname: hello\n")
        exe = zipfile.ZipInfo("bin/run")
        exe.create_system, exe.external_attr = 3, (stat.S_IFREG | 0o755) << 16
        zf.writestr(exe, b"#!/bin/sh\n")
    install_package(pkg, plugins_dir=plugins, policy=LAX, trust=TrustSet(), allow_unverified=True)
    modes = _modes(plugins / "hello")
    assert modes["bin/run"] & 0o111 == 0 and modes["bin"] & 0o700 == 0o700


def test_a_zip_with_its_manifest_one_directory_down_installs_that_directory(tmp_path: Path, plugins: Path) -> None:
    pkg = tmp_path / "acme-tools-1.0.0.zip"
    with zipfile.ZipFile(pkg, "w") as zf:
        zf.writestr("acme-tools/plugin.json", json.dumps({"id": "acme-tools", "version": "1.0.0"}))
        zf.writestr("acme-tools/server.py", b"print()\n")
    record = install_package(pkg, plugins_dir=plugins, policy=LAX, trust=TrustSet(), allow_unverified=True)
    assert sorted(record.files) == ["plugin.json", "server.py"]
    assert (plugins / "acme-tools" / "server.py").is_file()
    assert all(o.ok for o in check_installed(plugins, policy=LAX, trust=TrustSet()))


# -- the one tar reader, through the installer -------------------------------------------------------------------------


def test_a_second_gzip_member_is_refused_naming_the_package(tmp_path: Path, plugins: Path) -> None:
    import gzip

    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tf:
        tf.addfile(_member("com.example.demo/passwd", tarfile.SYMTYPE, linkname="/etc/passwd"))
    bundle = make_bundle(tmp_path / "b.tar.gz")
    bundle.write_bytes(bundle.read_bytes() + gzip.compress(raw.getvalue()))
    with pytest.raises(UnsafeArchiveError, match="second gzip member") as e:
        install_package(bundle, plugins_dir=plugins, policy=LAX, trust=TrustSet(), allow_unverified=True)
    assert e.value.subject == str(bundle)
    assert not plugins.exists()


@pytest.mark.parametrize("mode", [0o4755, 0o2755, 0o666, 0o000])
def test_unsafe_tar_modes_are_refused(tmp_path: Path, plugins: Path, mode: int) -> None:
    info = _member("com.example.demo/bad")
    info.mode = mode
    bundle = make_bundle(tmp_path / "m.tar.gz", extra=[info])
    with pytest.raises(UnsafeArchiveError) as e:
        install_package(bundle, plugins_dir=plugins, policy=LAX, trust=TrustSet(), allow_unverified=True)
    assert e.value.subject == "com.example.demo/bad"
    assert not plugins.exists()


def test_truncated_gzip_header_is_malformed(tmp_path: Path, plugins: Path) -> None:
    gz = tmp_path / "cut.tar.gz"
    gz.write_bytes(b"\x1f\x8b\x08\x08\x00\x00\x00\x00\x00\x03name")
    with pytest.raises(MalformedError) as e:
        install_package(gz, plugins_dir=plugins, policy=LAX, trust=TrustSet(), allow_unverified=True)
    assert e.value.subject == str(gz) and "truncated" in e.value.message


def test_deeply_nested_plugin_json_is_malformed_naming_it(tmp_path: Path, plugins: Path) -> None:
    deep = b'{"id": "x", "version": "1.0.0", "a": ' + b"[" * 50_000 + b"]" * 50_000 + b"}"
    bundle = tmp_path / "deep.tar.gz"
    with tarfile.open(bundle, "w:gz") as tf:
        info = tarfile.TarInfo("x/plugin.json")
        info.size = len(deep)
        tf.addfile(info, io.BytesIO(deep))
    with pytest.raises(MalformedError) as e:
        install_package(bundle, plugins_dir=plugins, policy=LAX, trust=TrustSet(), allow_unverified=True)
    assert e.value.subject == f"{bundle}:x/plugin.json"


# -- a refused or interrupted install leaves no trace ------------------------------------------------------------------


def test_refused_install_into_a_new_directory_leaves_nothing(tmp_path: Path, key: rsa.RSAPrivateKey) -> None:
    plugins = tmp_path / "deep" / "er" / "plugins"
    with pytest.raises(VerificationError):
        install_package(make_dify(tmp_path / "u.difypkg"), plugins_dir=plugins, policy=FORCED, trust=TrustSet())
    assert not (tmp_path / "deep").exists()
    with pytest.raises(UnsafeArchiveError):
        install_package(
            ZIP_ATTACKS["symlink"](tmp_path / "s.difypkg"),
            plugins_dir=plugins,
            policy=LAX,
            trust=TrustSet(),
            allow_unverified=True,
        )
    assert not (tmp_path / "deep").exists()


def test_refused_install_into_an_existing_directory_leaves_it_as_it_was(tmp_path: Path) -> None:
    plugins = tmp_path / "plugins"
    (plugins / "other-plugin").mkdir(parents=True)
    (plugins / "other-plugin" / "plugin.json").write_text("{}")
    before = only_state(plugins)
    for pkg in (make_dify(tmp_path / "u.difypkg"), make_bundle(tmp_path / "b.tar.gz")):
        with pytest.raises(VerificationError):
            install_package(pkg, plugins_dir=plugins, policy=FORCED, trust=TrustSet())
        assert only_state(plugins) == before  # no .signery/, no lock, no staging, no .NAME.new-*


@pytest.mark.parametrize("stage", ["staged", "verified", "extracted", "swapped", "recorded"])
def test_interrupted_first_install_leaves_nothing(
    tmp_path: Path, plugins: Path, key: rsa.RSAPrivateKey, trust: TrustSet, stage: str
) -> None:
    def fail_at(s: str) -> None:
        if s == stage:
            raise KeyboardInterrupt(s)

    with pytest.raises(KeyboardInterrupt):
        install_package(signed(tmp_path, key), plugins_dir=plugins, policy=FORCED, trust=trust, on_stage=fail_at)
    assert not plugins.exists()
    # The same into a plugins directory that holds signery's state already, but no store yet.
    (plugins / ".signery").mkdir(parents=True)
    with pytest.raises(KeyboardInterrupt):
        install_package(signed(tmp_path, key), plugins_dir=plugins, policy=FORCED, trust=trust, on_stage=fail_at)
    assert only_state(plugins) == [".signery"]


def test_check_and_remove_leave_nothing_behind(tmp_path: Path, plugins: Path) -> None:
    plugins.mkdir()
    assert check_installed(plugins, policy=LAX, trust=TrustSet()) == []
    with pytest.raises(UsageError, match="not installed"):
        remove_plugin(plugins, "hello")
    assert only_state(plugins) == []
    with pytest.raises(UsageError):
        remove_plugin(tmp_path / "nowhere", "hello")
    assert not (tmp_path / "nowhere").exists()
    assert list_installed(tmp_path / "nowhere") == []


def test_a_waiting_install_survives_the_lock_holder_cleaning_up(tmp_path: Path, plugins: Path) -> None:
    """The first install holds the lock in a new plugins directory, fails, and removes directory and lock file;
    the second, blocked on the lock meanwhile, starts over on a fresh lock and installs."""
    import threading
    import time

    holding = threading.Event()
    release = threading.Event()

    def hold_then_fail(s: str) -> None:
        if s == "staged":
            holding.set()
            release.wait(10)
            raise Interrupt("first")

    errors: list[BaseException] = []

    def first() -> None:
        try:
            install_package(
                make_dify(tmp_path / "a.difypkg", version="1.0.0"),
                plugins_dir=plugins,
                policy=LAX,
                trust=TrustSet(),
                allow_unverified=True,
                on_stage=hold_then_fail,
            )
        except Interrupt:
            pass
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    records = []

    def second() -> None:
        records.append(
            install_package(
                make_dify(tmp_path / "b.difypkg", version="2.0.0"),
                plugins_dir=plugins,
                policy=LAX,
                trust=TrustSet(),
                allow_unverified=True,
            )
        )

    t1 = threading.Thread(target=first)
    t1.start()
    assert holding.wait(10)
    t2 = threading.Thread(target=second)
    t2.start()
    time.sleep(0.3)  # the second install is now blocked on the lock
    assert not records
    release.set()
    t1.join(10)
    t2.join(10)
    assert not errors and [r.version for r in records] == ["2.0.0"]
    assert list_installed(plugins)[0].version == "2.0.0"
    assert only_state(plugins)[:2] == [".signery", ".signery/lock"]


# -- the YAML alias bomb: refused before any signature is looked at ----------------------------------------------------


@pytest.mark.parametrize("entry", ["manifest.yml", "manifest.yaml"])
def test_yaml_alias_bomb_is_refused_quickly_with_bounded_memory(tmp_path: Path, plugins: Path, entry: str) -> None:
    import resource
    import time

    levels = ["a: &a [x,x,x,x,x,x,x,x,x]"] + [
        f"{chr(98 + i)}: &{chr(98 + i)} [{','.join(['*' + chr(97 + i)] * 9)}]" for i in range(9)
    ]
    pkg = tmp_path / "bomb.zip"
    with zipfile.ZipFile(pkg, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(entry, "\n".join(levels) + "\nname: demo\nversion: 1.0.0\n")
    assert pkg.stat().st_size < 1000  # 9**10 strings once expanded
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.monotonic()
    with pytest.raises(MalformedError) as e:
        install_package(pkg, plugins_dir=plugins, policy=FORCED, trust=TrustSet())
    assert time.monotonic() - start < 0.5
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss < 50 << 10  # KiB: under 50 MiB more
    assert e.value.reason is Reason.MALFORMED and e.value.subject == f"{pkg}:{entry}"
    assert not plugins.exists()
