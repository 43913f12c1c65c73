"""``signery trust`` and ``signery keygen`` as gpg users expect: key ids, re-adding, taken names, revocations that
survive --replace, expiry in the past, passphrases from a file or the environment, RSA-3072 OpenPGP keys."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

from signery import openpgp
from signery.cli import cli
from signery.cli import keys as keys_cli
from signery.cli import trust as trust_cli
from signery.cli._common import available_formats
from signery.formats import FORMATS, names

PASS = "correct horse battery"


def run(*args: object, env: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    r = CliRunner().invoke(cli, [str(a) for a in args] + ["--json"], env=env, catch_exceptions=False)
    doc = json.loads(r.stdout)
    assert list(doc)[:3] == ["ok", "reason", "message"], doc
    assert doc["ok"] is (r.exit_code == 0), (r.exit_code, doc)
    return r.exit_code, doc


def text(*args: object, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    r = CliRunner().invoke(cli, [str(a) for a in args], env=env, catch_exceptions=False)
    return r.exit_code, r.stdout, r.stderr


def spaced(fpr: str) -> str:
    g = [fpr[i : i + 4].upper() for i in range(0, 40, 4)]
    return " ".join(g[:5]) + "  " + " ".join(g[5:])


@pytest.fixture()
def work(tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    for stem, uid in (("a", "Alice Smith <alice@home.example>"), ("b", "Alice Smith (work) <alice@work.example>")):
        code, doc = run("keygen", stem, "--format", "openpgp", "--uid", uid, "--algorithm", "ed25519")
        assert code == 0, doc
    assert run("keygen", "pem")[0] == 0
    return tmp_path


def test_openpgp_keys_show_the_long_key_id_and_take_gpgs_spellings(work: Path) -> None:
    code, doc = run("trust", "add", "a.public.asc", "--name", "alice")
    assert code == 0, doc
    fpr = doc["added"][0]["key_id"]
    assert doc["results"][0]["short_id"] == fpr[-16:]
    code, out, _ = text("trust", "add", "b.public.asc", "--name", "bob")
    assert code == 0 and fpr not in out
    bob = json.loads(text("trust", "show", "bob", "--json")[1])["key"]
    assert bob["short_id"] in out and bob["key_id"][-16:] == bob["short_id"]  # shown: the low 64 bits
    for ident in (spaced(fpr), fpr.upper(), "0x" + fpr[-16:].upper(), fpr[-16:], fpr[:16]):
        code, doc = run("trust", "show", ident)
        assert code == 0 and doc["key"]["name"] == "alice", (ident, doc)
    code, out, _ = text("trust", "show", spaced(fpr))
    assert code == 0 and f"key id:      {fpr[-16:]}" in out and f"fingerprint: {fpr}" in out
    code, out, _ = text("trust", "show", "alice", "--export")
    assert code == 0 and out.startswith("-----BEGIN PGP PUBLIC KEY BLOCK-----")
    code, doc = run("trust", "show", fpr[-8:])  # gpg's 32-bit short key id: refused, with what to give
    assert code == 2 and doc["reason"] == "malformed" and "16 hex digits" in doc["hint"]
    code, doc = run("trust", "remove", "0x" + fpr[-16:].upper())
    assert code == 0 and doc["removed"][0]["name"] == "alice"


def test_pkix_keys_take_the_same_spellings(work: Path) -> None:
    code, doc = run("trust", "add", "pem.public.pem")
    assert code == 0, doc
    kid = doc["added"][0]["key_id"]
    assert doc["added"][0]["short_id"] == kid[:16] and len(kid) == 64
    spaced_id = " ".join(kid[i : i + 4].upper() for i in range(0, 64, 4))
    for ident in (spaced_id, "0x" + kid[:16].upper(), kid[:20]):
        assert run("trust", "show", ident)[1]["key"]["key_id"] == kid
    assert run("trust", "revoke", "0X" + kid[:16].upper())[0] == 0
    assert run("trust", "remove", kid[:12])[0] == 2  # under 16 digits names nothing


def test_re_adding_is_a_no_op_and_a_taken_name_needs_replace(work: Path) -> None:
    assert run("trust", "add", "a.public.asc", "--name", "alice")[0] == 0
    store = (work / "signery-home" / "trust.json").read_bytes() if (work / "signery-home").exists() else None
    code, doc = run("trust", "add", "a.public.asc", "--name", "alice")
    assert code == 0 and doc["ok"] is True and doc["added"] == []
    assert "already trusted" in doc["message"] and doc["results"][0]["action"] == "unchanged"
    code, out, _ = text("trust", "add", "a.public.asc")  # its UID name, but it is trusted as alice: the same
    assert code == 0 and "already trusted: alice" in out and "nothing changed" in out
    if store is not None:
        assert (work / "signery-home" / "trust.json").read_bytes() == store
    code, doc = run("trust", "add", "b.public.asc", "--name", "alice")
    assert code == 2 and doc["reason"] == "policy-violation" and doc["subject"] == "alice"
    assert "'alice' is taken" in doc["message"] and "--replace" in doc["hint"]
    code, doc = run("trust", "add", "a.public.asc", "--name", "other")
    assert code == 2 and "already trusted as 'alice'" in doc["message"] and "--replace" in doc["hint"]
    code, doc = run("trust", "add", "a.public.asc", "--name", "alice", "--format", "openpgp")
    assert code == 2 and "other constraints" in doc["message"] and "--replace" in doc["hint"]
    code, doc = run("trust", "add", "b.public.asc", "--name", "alice", "--replace")
    assert code == 0 and doc["results"][0]["action"] == "replaced" and doc["results"][0]["replaced"] == ["alice"]


def test_two_uids_with_one_name_into_an_empty_store(work: Path) -> None:
    code, doc = run("trust", "add", "a.public.asc", "b.public.asc")
    assert code == 0, doc
    assert "already" not in doc["message"]
    got = sorted(r["name"] for r in doc["results"])
    assert got == sorted(f"Alice Smith ({r['short_id']})" for r in doc["results"])
    assert sorted(k["name"] for k in run("trust", "list")[1]["keys"]) == got


def test_replace_keeps_a_revocation_and_unrevoke_lifts_it(work: Path) -> None:
    assert run("trust", "add", "a.public.asc", "--name", "alice")[0] == 0
    code, doc = run("trust", "revoke", "alice")
    assert code == 0 and doc["revoked"]["revoked"] is True and doc["changed"] is True
    assert run("trust", "revoke", "alice")[1]["changed"] is False  # revoked already: says so
    code, doc = run("trust", "add", "a.public.asc", "--name", "alice", "--replace", "--expires", "2099-01-01")
    assert code == 0 and doc["added"][0]["revoked"] is True and "unrevoke" in doc["results"][0]["note"]
    code, doc = run("trust", "unrevoke", "alice")
    assert code == 0 and doc["unrevoked"]["revoked"] is False and doc["changed"] is True
    code, doc = run("trust", "unrevoke", "alice")
    assert code == 0 and doc["changed"] is False and "nothing changed" in doc["message"]
    assert run("trust", "unrevoke", "nobody")[1]["reason"] == "malformed"


def test_an_expiry_in_the_past_needs_force(work: Path) -> None:
    code, doc = run("trust", "add", "pem.public.pem", "--expires", "2001-02-03")
    assert code == 2 and doc["reason"] == "expired-key" and doc["subject"] == "--expires"
    assert "2001-02-03" in doc["message"] and "--force" in doc["hint"]
    assert run("trust", "list")[1]["keys"] == []
    code, doc = run("trust", "add", "pem.public.pem", "--expires", "2001-02-03", "--force")
    assert code == 0 and doc["added"][0]["expires"].startswith("2001-02-03")


def test_an_encrypted_private_key_takes_a_passphrase_file_or_env(work: Path) -> None:
    (work / "pw.txt").write_text(PASS + "\nignored second line\n")
    code, doc = run("keygen", "enc", "--passphrase-file", "pw.txt")
    assert code == 0 and doc["encrypted"] is True
    assert b"ENCRYPTED" in (work / "enc.private.pem").read_bytes()
    code, doc = run("trust", "add", "enc.private.pem")  # no terminal here: say which options to give
    assert code == 2 and doc["reason"] == "malformed" and doc["subject"] == "enc.private.pem"
    assert doc["message"] == (
        "enc.private.pem is encrypted: give --passphrase-env VAR or --passphrase-file FILE, or run on a "
        "terminal to be asked"
    )
    code, doc = run("trust", "add", "enc.private.pem", "--passphrase-file", "pw.txt")
    assert code == 0, doc
    code, doc = run("trust", "add", "enc.private.pem", "--name", "again", "--passphrase-env", "PW", env={"PW": PASS})
    assert code == 2 and "already trusted as 'enc'" in doc["message"]  # it read the key: the same one
    code, doc = run("trust", "add", "enc.private.pem", "--passphrase-file", "pw.txt", "--passphrase-env", "PW")
    assert code == 2 and "not both" in doc["message"]
    (work / "empty.txt").write_text("\n")
    code, doc = run("trust", "add", "enc.private.pem", "--passphrase-file", "empty.txt")
    assert code == 2 and doc["subject"] == "empty.txt" and "empty" in doc["message"]
    code, doc = run("keygen", "enc2", "--encrypt")  # asked to encrypt, no passphrase, no terminal
    assert code == 2 and "--passphrase-env VAR or --passphrase-file FILE" in doc["message"]
    assert not (work / "enc2.private.pem").exists()
    assert run("keygen", "plain")[1]["encrypted"] is False  # no option, no --encrypt: as before, unencrypted


def test_openpgp_keygen_defaults_to_rsa_3072(tmp_path: Path) -> None:
    code, doc = run("keygen", "rel", "--format", "openpgp", "--uid", "Release <rel@example.org>", "--out-dir", tmp_path)
    assert code == 0 and doc["algorithm"] == "rsa-3072" and doc["short_id"] == doc["key_id"][-16:]
    cert = openpgp.parse_certificate((tmp_path / "rel.public.asc").read_bytes(), source="rel.public.asc")
    pub = cert.primary.key.public_key
    assert pub is not None and getattr(pub, "key_size", None) == 3072
    code, doc = run("keygen", "x", "--format", "openpgp", "--uid", "X <x@example.org>", "--algorithm", "ecdsa-p256")
    assert code == 2 and doc["subject"] == "--algorithm" and "rsa-3072" in doc["message"]
    code, doc = run("keygen", "d", "--format", "dify", "--algorithm", "ed25519", "--out-dir", tmp_path)
    assert code == 2 and doc["subject"] == "--algorithm"


def _choices(cmd: click.Command, option: str) -> list[str]:
    param = next(p for p in cmd.params if option in getattr(p, "opts", ()))
    assert isinstance(param.type, click.Choice)
    return list(param.type.choices)


def test_format_choices_come_from_the_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _choices(trust_cli.add, "--format") == available_formats()
    assert set(available_formats()) <= set(names())
    assert _choices(keys_cli.keygen, "--format") == [
        n for n in available_formats() if n in ("native", "dify", "openpgp")
    ]
    monkeypatch.setitem(FORMATS, "not-yet-written", "signery.formats.not_yet_written")
    assert "not-yet-written" in names() and "not-yet-written" not in available_formats()


def test_unlock_asks_once_and_with_default_env(monkeypatch: pytest.MonkeyPatch) -> None:
    from signery.cli import _common
    from signery.errors import MalformedError, UsageError

    calls: list[bytes | None] = []

    def load(pw: bytes | None) -> str:
        calls.append(pw)
        if pw is None:
            raise MalformedError("k.pem is encrypted; give its passphrase", subject="k.pem")
        if pw != b"right":
            raise UsageError("k.pem: wrong passphrase", subject="k.pem")
        return "key"

    typed = iter(["right", "wrong"])
    monkeypatch.setattr("getpass.getpass", lambda prompt: next(typed))
    monkeypatch.setattr(_common.sys.stdin, "isatty", lambda: True, raising=False)
    source = _common.Passphrase()
    assert _common.unlock(load, source, what="k.pem") == "key" and calls == [None, b"right"]
    assert _common.unlock(load, source, what="k.pem") == "key" and calls[-1] == b"right"  # typed once, kept
    monkeypatch.setenv("PW", "x")
    with pytest.raises(UsageError, match="wrong passphrase"):  # given, wrong: the library's error, not a prompt
        _common.unlock(load, _common.Passphrase(env="PW"), what="k.pem")
    monkeypatch.setenv("ELASTIC_PW", "right")
    assert _common.Passphrase().with_default_env("ELASTIC_PW").value() == b"right"
    assert _common.Passphrase(env="PW").with_default_env("ELASTIC_PW").value() == b"x"  # the option wins
