"""Naming trusted keys as gpg users do (fingerprints with spaces, long key ids, 0x, any case), and what
``TrustStore.add_loaded`` does with keys that are trusted already, names that are taken, revocations and expiry."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from signery import openpgp
from signery.errors import ConflictError, Reason, UsageError
from signery.keys import generate_private_key, public_key_pem
from signery.trust import (
    LoadedKey,
    TrustSet,
    TrustStore,
    load_trusted_key_file,
    normalize_key_ident,
    short_key_id,
    trusted_key_from_public,
)
from support import require_tool

NOW = datetime.now(UTC)


def gpg_spaced(fpr: str) -> str:
    """A fingerprint as ``gpg --fingerprint`` prints it: upper case, groups of four, two spaces in the middle."""
    groups = [fpr[i : i + 4].upper() for i in range(0, 40, 4)]
    return " ".join(groups[:5]) + "  " + " ".join(groups[5:])


@pytest.fixture(scope="module")
def pgp_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("pgp")
    out = {}
    for stem, uid in (
        ("alice", "Alice Smith <alice@home.example>"),
        ("work", "Alice Smith (work) <alice@work.example>"),
    ):
        key = openpgp.generate_key(uid, algorithm="ed25519")
        (d / f"{stem}.asc").write_text(key.public_armored)
        out[stem] = d / f"{stem}.asc"
    return out


def test_openpgp_short_id_is_the_long_key_id(pgp_files: dict[str, Path]) -> None:
    k = load_trusted_key_file(pgp_files["alice"]).key
    assert len(k.key_id) == 40
    assert k.short_id == k.key_id[-16:]  # the low 64 bits, as gpg shows it; not the first 16 digits
    assert short_key_id(k.key_id) == k.key_id[-16:]  # a 40-digit id is an OpenPGP v4 fingerprint
    assert k.summary()["short_id"] == k.key_id[-16:]
    pkix = trusted_key_from_public(generate_private_key("ed25519").public_key(), name="p")
    assert pkix.short_id == pkix.key_id[:16] and short_key_id(pkix.key_id) == pkix.key_id[:16]


def test_openpgp_key_is_named_as_gpg_prints_it(pgp_files: dict[str, Path]) -> None:
    k = load_trusted_key_file(pgp_files["alice"]).key
    fpr, long_id = k.key_id, k.key_id[-16:]
    for ident in (
        k.name,
        fpr,
        fpr.upper(),
        gpg_spaced(fpr),
        "0x" + fpr.upper(),
        long_id,
        long_id.upper(),
        "0x" + long_id.upper(),
        " ".join(long_id[i : i + 4] for i in range(0, 16, 4)),
        fpr[:16],  # the first 16 digits, what signery used to show
        fpr[:24].upper(),
    ):
        assert k.matches(ident), ident
    for ident in (fpr[-8:], "0x" + fpr[-8:], fpr[:15], fpr[-17:], k.name.lower(), "", "0x", "not hex", fpr + "00"):
        assert not k.matches(ident), ident


def test_pkix_key_takes_the_same_spellings() -> None:
    k = trusted_key_from_public(generate_private_key("ecdsa-p256").public_key(), name="acme")
    kid = k.key_id
    for ident in (
        kid,
        kid.upper(),
        "0x" + kid[:16].upper(),
        " ".join(kid[i : i + 4] for i in range(0, 64, 4)),
        kid[:20],
    ):
        assert k.matches(ident), ident
    for ident in (kid[:15], kid[-16:], "0x" + kid[:8]):  # the last 16 digits are an OpenPGP rule only
        assert not k.matches(ident), ident


def test_normalize_key_ident() -> None:
    assert normalize_key_ident(" 0xAB cd\tEF ") == "abcdef"
    assert normalize_key_ident("0XABCD") == "abcd"
    assert normalize_key_ident("alice") is None and normalize_key_ident("") is None


def test_subkeys_are_named_by_fingerprint_and_long_key_id(tmp_path: Path) -> None:
    require_tool("gpg")
    home = tmp_path / "gnupg"
    home.mkdir(mode=0o700)
    gpg = ["gpg", "--homedir", str(home), "--batch", "--pinentry-mode", "loopback", "--passphrase", ""]
    subprocess.run(
        [*gpg, "--quick-gen-key", "Sub <sub@example.org>", "ed25519", "cert", "never"], check=True, capture_output=True
    )
    fpr = subprocess.run([*gpg, "--with-colons", "--list-keys"], check=True, capture_output=True, text=True).stdout
    primary = next(line.split(":")[9] for line in fpr.splitlines() if line.startswith("fpr:"))
    subprocess.run([*gpg, "--quick-add-key", primary, "ed25519", "sign", "never"], check=True, capture_output=True)
    (tmp_path / "sub.asc").write_bytes(
        subprocess.run([*gpg, "--armor", "--export"], check=True, capture_output=True).stdout
    )
    k = load_trusted_key_file(tmp_path / "sub.asc").key
    assert k.key_id == primary.lower() and len(k.subkey_ids) == 1
    sub = k.subkey_ids[0]
    assert k.matches(gpg_spaced(sub)) and k.matches("0x" + sub[-16:].upper()) and k.matches(primary[-16:])


def test_resolve_is_unique_and_says_why_not(pgp_files: dict[str, Path]) -> None:
    a = load_trusted_key_file(pgp_files["alice"], name="a").key
    b = load_trusted_key_file(pgp_files["work"], name="b").key
    trust = TrustSet([a, b])
    assert trust.resolve(gpg_spaced(b.key_id)) == b and trust.resolve("a") == a
    assert trust.find(a.key_id[-16:]) == [a]
    with pytest.raises(UsageError) as info:
        trust.resolve(a.key_id[-8:])  # gpg's short key id: too easy to collide, refused with the reason
    assert info.value.subject == a.key_id[-8:] and "16 hex digits" in str(info.value.hint)
    twin = TrustSet([a, load_trusted_key_file(pgp_files["alice"], name=a.key_id[-16:]).key])
    with pytest.raises(UsageError, match="matches 2 trusted keys"):
        twin.resolve(a.key_id[-16:])  # a name that is another key's long key id: ambiguous, not a guess


def loaded(path: Path, **kw: object) -> LoadedKey:
    return load_trusted_key_file(path, **kw)  # type: ignore[arg-type]


def test_adding_a_key_again_changes_nothing(tmp_path: Path, pgp_files: dict[str, Path]) -> None:
    store = TrustStore(tmp_path)
    (first,) = store.add_loaded([loaded(pgp_files["alice"])])
    assert first.action == "added" and first.key.name == "Alice Smith"
    before = store.path.read_bytes()
    (again,) = store.add_loaded([loaded(pgp_files["alice"])])
    assert again.action == "unchanged" and again.key == first.key
    assert store.path.read_bytes() == before
    # a key trusted under a chosen name, added again without --name, keeps that name: still nothing to do
    store.add_loaded([loaded(pgp_files["work"], name="bob")])
    (kept,) = store.add_loaded([loaded(pgp_files["work"])])
    assert kept.action == "unchanged" and kept.key.name == "bob"


def test_taken_names_and_other_settings_need_replace(tmp_path: Path, pgp_files: dict[str, Path]) -> None:
    store = TrustStore(tmp_path)
    store.add_loaded([loaded(pgp_files["alice"], name="alice")])
    with pytest.raises(ConflictError) as taken:
        store.add_loaded([loaded(pgp_files["work"], name="alice")])
    assert "taken by another key" in taken.value.message and "--replace" in str(taken.value.hint)
    assert taken.value.reason is Reason.POLICY_VIOLATION and taken.value.subject == "alice"
    with pytest.raises(ConflictError) as renamed:
        store.add_loaded([loaded(pgp_files["alice"], name="alice2")])
    assert "already trusted as 'alice'" in renamed.value.message and "--replace" in str(renamed.value.hint)
    later = NOW + timedelta(days=30)
    with pytest.raises(ConflictError) as other:
        store.add_loaded([loaded(pgp_files["alice"], name="alice", expires=later)])
    assert "expiry" in other.value.message and "--replace" in str(other.value.hint)
    (done,) = store.add_loaded([loaded(pgp_files["alice"], name="alice", expires=later)], replace_existing=True)
    assert done.action == "replaced" and [k.expires for k in store.load()] == [later]


def test_keys_given_together_with_the_same_uid_name_are_told_apart(tmp_path: Path, pgp_files: dict[str, Path]) -> None:
    """Two certificates of "Alice Smith" into an empty store: both trusted, neither refused for the other's name
    (the store said "already has name 'Alice Smith'" of a store that had nothing)."""
    store = TrustStore(tmp_path)
    outcomes = store.add_loaded([loaded(pgp_files["alice"]), loaded(pgp_files["work"])])
    names = sorted(o.key.name for o in outcomes)
    assert names == sorted(f"Alice Smith ({o.key.short_id})" for o in outcomes)
    assert all(o.action == "added" and o.note for o in outcomes)
    assert sorted(k.name for k in store.load()) == names
    # given twice in one call: the second is nothing to do, not a clash with the first
    other = TrustStore(tmp_path / "other")
    first, second = other.add_loaded([loaded(pgp_files["alice"]), loaded(pgp_files["alice"])])
    assert (first.action, second.action) == ("added", "unchanged") and len(other.load()) == 1
    # explicit names that clash inside one call are not blamed on the store
    a, b = (trusted_key_from_public(generate_private_key("ed25519").public_key(), name="same") for _ in range(2))
    with pytest.raises(UsageError) as info:
        TrustStore(tmp_path / "third").add(a, b)
    assert "already" not in info.value.message and "both named 'same'" in info.value.message


def test_replace_keeps_a_revocation_until_unrevoke(tmp_path: Path, pgp_files: dict[str, Path]) -> None:
    store = TrustStore(tmp_path)
    store.add_loaded([loaded(pgp_files["alice"], name="alice")])
    fpr = store.load().resolve("alice").key_id
    assert store.revoke(gpg_spaced(fpr)).revoked
    (o,) = store.add_loaded([loaded(pgp_files["alice"], name="alice-new")], replace_existing=True)
    assert o.key.revoked and o.note and "unrevoke" in o.note
    (k,) = store.load()
    assert k.name == "alice-new" and k.revoked and k.status_at(NOW) is Reason.REVOKED_KEY
    assert not store.unrevoke("0x" + fpr[-16:].upper()).revoked
    assert store.load().resolve("alice-new").status_at(NOW) is None
    assert not store.unrevoke("alice-new").revoked  # not revoked: nothing to do


def test_unrevoke_cannot_undo_a_certificates_own_revocation(tmp_path: Path) -> None:
    require_tool("gpg")
    home = tmp_path / "gnupg"
    home.mkdir(mode=0o700)
    gpg = ["gpg", "--homedir", str(home), "--batch", "--yes", "--pinentry-mode", "loopback", "--passphrase", ""]
    subprocess.run(
        [*gpg, "--quick-gen-key", "Rev <rev@example.org>", "ed25519", "sign", "never"], check=True, capture_output=True
    )
    cols = subprocess.run([*gpg, "--with-colons", "--list-keys"], check=True, capture_output=True, text=True).stdout
    fpr = next(line.split(":")[9] for line in cols.splitlines() if line.startswith("fpr:"))
    rev = home / "openpgp-revocs.d" / f"{fpr}.rev"
    text = rev.read_text().replace(":-----BEGIN PGP PUBLIC KEY BLOCK-----", "-----BEGIN PGP PUBLIC KEY BLOCK-----")
    (tmp_path / "rev.asc").write_text(text)
    subprocess.run([*gpg, "--import", str(tmp_path / "rev.asc")], check=True, capture_output=True)
    (tmp_path / "revoked.asc").write_bytes(
        subprocess.run([*gpg, "--armor", "--export"], check=True, capture_output=True).stdout
    )
    store = TrustStore(tmp_path / "s")
    (o,) = store.add_loaded([loaded(tmp_path / "revoked.asc", name="rev")])
    assert o.key.revoked
    with pytest.raises(UsageError) as info:
        store.unrevoke("rev")
    assert info.value.reason is Reason.REVOKED_KEY and "own certificate" in info.value.message


def test_an_expiry_in_the_past_is_refused_unless_allowed(tmp_path: Path) -> None:
    f = tmp_path / "acme.public.pem"
    f.write_bytes(public_key_pem(generate_private_key("ed25519").public_key()))
    store = TrustStore(tmp_path / "s")
    past = NOW - timedelta(days=1)
    with pytest.raises(UsageError) as info:
        store.add_loaded([loaded(f, expires=past)], allow_expired=False)
    assert info.value.reason is Reason.EXPIRED_KEY and info.value.subject == "--expires"
    assert "--force" in str(info.value.hint) and "acme" in info.value.message
    assert len(store.load()) == 0
    (o,) = store.add_loaded([loaded(f, expires=past)], allow_expired=True)
    assert o.action == "added" and o.key.status_at(NOW) is Reason.EXPIRED_KEY
