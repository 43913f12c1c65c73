"""The core commands through the real entry point: keygen, sign, verify, inspect, trust; exit codes and JSON."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from signery.cli import cli

ROOT = Path(__file__).resolve().parents[2]
SIGNERY = ROOT / ".venv" / "bin" / "signery"
SIG_KEYS = {"key_id", "key_name", "status", "signed_at", "claims"}


def run(*args: str, code: int | None = 0, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    r = CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)
    if code is not None:
        assert r.exit_code == code, (args, r.exit_code, r.stdout, r.stderr)
    return r.exit_code, r.stdout, r.stderr


@pytest.fixture()
def work(tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    with zipfile.ZipFile(tmp_path / "plugin.zip", "w") as zf:
        zf.writestr("manifest.yaml", "name: demo\n")
        zf.writestr("main.py", "print('hi')\n")
    run("keygen", "alice")
    run("keygen", "bob", "--algorithm", "ecdsa-p256")
    return tmp_path


def test_keygen_writes_0600_key_and_refuses_overwrite(work: Path) -> None:
    assert stat.S_IMODE((work / "alice.private.pem").stat().st_mode) == 0o600
    assert (work / "alice.public.pem").read_bytes().startswith(b"-----BEGIN PUBLIC KEY")
    before = (work / "alice.private.pem").read_bytes()
    _, _, err = run("keygen", "alice", code=2)
    assert "exists" in err
    assert (work / "alice.private.pem").read_bytes() == before
    _, out, _ = run("keygen", "alice", "--force", "--json")
    doc = json.loads(out)
    assert doc["ok"] and len(doc["key_id"]) == 64
    assert (work / "alice.private.pem").read_bytes() != before
    run("keygen", "x", "--algorithm", "rsa-1024", code=2)


def test_keygen_with_passphrase_env(work: Path) -> None:
    env = {"PW": "s3cret"}
    run("keygen", "enc", "--passphrase-env", "PW", env=env)
    assert b"ENCRYPTED" in (work / "enc.private.pem").read_bytes()
    run("sign", "plugin.zip", "--key", "enc.private.pem", code=2)  # no passphrase given
    run("sign", "plugin.zip", "--key", "enc.private.pem", "--passphrase-env", "PW", env=env)
    run("keygen", "enc2", "--passphrase-env", "UNSET_VAR_X", code=2)


def test_sign_verify_countersign_threshold_json(work: Path) -> None:
    run("sign", "plugin.zip", "--key", "alice.private.pem", "--claim", "name=demo", "--claim", "version=1")
    signed = work / "plugin.signed.zip"
    _, out, _ = run("verify", str(signed), "--key", "alice.public.pem")
    assert "valid" in out and "verified" in out
    run("sign", str(signed), "--key", "bob.private.pem", "--in-place")
    _, out, _ = run(
        "verify", str(signed), "--key", "alice.public.pem", "--key", "bob.public.pem", "--threshold", "2", "--json"
    )
    doc = json.loads(out)
    assert doc["verified"] is True and doc["reason"] is None
    assert len(doc["signatures"]) == 2
    for s in doc["signatures"]:
        assert set(s) >= SIG_KEYS and s["status"] == "valid"
    assert doc["signatures"][0]["claims"] == {"name": "demo", "version": "1"}
    assert doc["signatures"][0]["key_name"] == "alice"
    _, out, _ = run("verify", str(signed), "--key", "alice.public.pem", "--threshold", "2", "--json", code=1)
    doc = json.loads(out)
    assert doc["verified"] is False and doc["reason"] == "unknown-key"


def test_trust_store_add_list_remove_and_verify_without_key(work: Path, home: Path) -> None:
    run("trust", "add", "alice.public.pem", "--name", "alice")
    assert (home / "trust.json").is_file()  # $SIGNERY_HOME honoured
    _, out, _ = run("trust", "list", "--json")
    (entry,) = json.loads(out)["keys"]
    assert entry["name"] == "alice" and "material" not in entry
    run("trust", "add", "alice.public.pem", "--name", "again", code=2)  # the same key twice
    run("sign", "plugin.zip", "--key", "alice.private.pem")
    run("verify", "plugin.signed.zip")
    run("trust", "revoke", "alice")
    _, out, _ = run("verify", "plugin.signed.zip", "--json", code=1)
    assert json.loads(out)["reason"] == "revoked-key"
    run("trust", "remove", "alice")
    _, out, _ = run("verify", "plugin.signed.zip", "--json", code=1)
    assert json.loads(out)["reason"] == "unknown-key"
    run("trust", "remove", "alice", code=2)
    run("trust", "add", "plugin.zip", code=2)  # not a key


def test_trust_store_option_and_expiry(work: Path) -> None:
    store = work / "store"
    run("trust", "add", "alice.public.pem", "--trust-store", str(store), "--expires", "2000-01-01", code=2)
    run("trust", "add", "alice.public.pem", "--trust-store", str(store), "--expires", "2000-01-01", "--force")
    run("sign", "plugin.zip", "--key", "alice.private.pem")
    _, out, _ = run("verify", "plugin.signed.zip", "--trust-store", str(store), "--json", code=1)
    assert json.loads(out)["reason"] == "expired-key"
    run("trust", "add", "bob.public.pem", "--trust-store", str(store), "--category", "partner")
    run("sign", "plugin.zip", "--key", "bob.private.pem", "-o", "bob.zip", "--claim", "category=community")
    _, out, _ = run("verify", "bob.zip", "--trust-store", str(store), "--json", code=1)
    assert json.loads(out)["reason"] == "policy-violation"


def test_corrupt_trust_store_exits_3(work: Path, home: Path) -> None:
    (home / "trust.json").write_text("{broken")
    run("sign", "plugin.zip", "--key", "alice.private.pem")
    run("verify", "plugin.signed.zip", code=3)
    run("trust", "list", code=3)


def test_tampered_unsigned_and_unusable_inputs(work: Path) -> None:
    run("sign", "plugin.zip", "--key", "alice.private.pem")
    _, out, _ = run("verify", "plugin.zip", "--key", "alice.public.pem", "--json", code=1)
    assert json.loads(out)["reason"] == "unsigned"
    with zipfile.ZipFile("plugin.signed.zip") as src, zipfile.ZipFile("evil.zip", "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            dst.writestr(info, b"print('evil')\n" if info.filename == "main.py" else data)
    _, out, err = run("verify", "evil.zip", "--key", "alice.public.pem", code=1)
    assert "tampered" in err and "main.py" in err
    _, out, _ = run("verify", "evil.zip", "--key", "alice.public.pem", "--json", code=1)
    doc = json.loads(out)
    assert doc["verified"] is False and doc["reason"] == "tampered"
    (work / "junk.bin").write_bytes(b"PK\x03\x04 not really a zip")
    run("verify", "junk.bin", "--key", "alice.public.pem", code=2)
    run("verify", "missing.zip", code=2)
    run("verify", "plugin.signed.zip", "--key", "plugin.zip", code=2)  # a key file that is not a key


def test_corrupted_entry_data_is_refused_with_tampered_json(work: Path) -> None:
    run("sign", "plugin.zip", "--key", "alice.private.pem")
    data = bytearray((work / "plugin.signed.zip").read_bytes())
    i = data.index(b"name: demo")
    data[i] ^= 0x20  # the stored bytes no longer match their CRC-32
    (work / "crc.zip").write_bytes(bytes(data))
    _, out, _ = run("verify", "crc.zip", "--key", "alice.public.pem", "--json", code=1)
    doc = json.loads(out)
    assert doc["verified"] is False and doc["reason"] == "tampered"
    assert isinstance(doc["signatures"], list)


def test_unsafe_archive_json_keeps_the_verify_shape(work: Path) -> None:
    data = (work / "plugin.zip").read_bytes() + b"appended"
    (work / "trail.zip").write_bytes(data)
    _, out, _ = run("verify", "trail.zip", "--key", "alice.public.pem", "--json", code=1)
    doc = json.loads(out)
    assert doc["verified"] is False and doc["reason"] == "unsafe-archive" and doc["signatures"] == []


def test_detached_file_directory_and_inspect(work: Path) -> None:
    (work / "firmware.bin").write_bytes(os.urandom(1000))
    _, out, _ = run("sign", "firmware.bin", "--key", "alice.private.pem", "--digest", "blake3", "--json")
    assert json.loads(out)["written"].endswith("firmware.bin.signery.json")
    run("verify", "firmware.bin", "--key", "alice.public.pem")
    (work / "d").mkdir()
    (work / "d" / "a.txt").write_text("a")
    run("sign", "d", "--key", "bob.private.pem")
    run("verify", "d", "--key", "bob.public.pem")
    run("sign", "plugin.zip", "--key", "alice.private.pem", "--detached")
    assert (work / "plugin.zip.signery.json").is_file()
    run("verify", "plugin.zip", "--key", "alice.public.pem")
    _, out, _ = run("inspect", "plugin.zip", "--json")
    doc = json.loads(out)
    assert len(doc["envelopes"]) == 1 and doc["envelopes"][0]["payloadType"] == "application/vnd.in-toto+json"
    _, out, _ = run("inspect", "plugin.zip")
    assert "1 signature" in out


def test_usage_errors_exit_2(work: Path) -> None:
    run("sign", "plugin.zip", code=2)  # no key
    run("sign", "plugin.zip", "--key", "alice.private.pem", "--claim", "novalue", code=2)
    run("verify", "plugin.zip", "--threshold", "0", code=2)
    run("nonsense", code=2)


def test_real_entry_points(work: Path) -> None:
    if not SIGNERY.exists():
        pytest.skip("no .venv/bin/signery")
    env = {**os.environ, "SIGNERY_HOME": str(work / "h")}
    ok = subprocess.run([str(SIGNERY), "sign", "plugin.zip", "--key", "alice.private.pem"], env=env, cwd=work)
    assert ok.returncode == 0
    r = subprocess.run(
        [str(SIGNERY), "verify", "plugin.signed.zip", "--key", "alice.public.pem", "--json"],
        env=env,
        cwd=work,
        capture_output=True,
    )
    assert r.returncode == 0 and json.loads(r.stdout)["verified"] is True
    r = subprocess.run([str(SIGNERY), "verify", "plugin.zip", "--key", "alice.public.pem"], env=env, cwd=work)
    assert r.returncode == 1
    r = subprocess.run([str(SIGNERY), "trust", "add", "alice.public.pem"], env=env, cwd=work, capture_output=True)
    assert r.returncode == 0 and (work / "h" / "trust.json").is_file()
    r = subprocess.run(
        [sys.executable, "-m", "signery", "verify", "plugin.signed.zip"], env=env, cwd=work, capture_output=True
    )
    assert r.returncode == 0, r.stderr
    r = subprocess.run([sys.executable, "-m", "signery", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "verify" in r.stdout
