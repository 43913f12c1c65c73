"""The passphrase prompt, through a real pseudo-terminal driving ``.venv/bin/signery``: asked when a key is
encrypted and no passphrase was given, never echoed; and the library messages that trigger it stay what
``cli._common.needs_passphrase`` looks for."""

from __future__ import annotations

import json
import os
import pty
import select
import sys
import time
from pathlib import Path

import pytest

from signery import openpgp
from signery.cli._common import needs_passphrase
from signery.errors import SigneryError
from signery.keys import generate_private_key, load_private_key, private_key_pem

ROOT = Path(__file__).resolve().parents[2]
SIGNERY = ROOT / ".venv" / "bin" / "signery"
PASS = "pty-s3cret-words"

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="pseudo-terminals are POSIX")


class Terminal:
    """``signery ARGS`` with a pseudo-terminal as its controlling terminal, stdin, stdout and stderr."""

    def __init__(self, *args: str | Path, cwd: Path, home: Path) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SIGNERY_")}
        env.update(SIGNERY_HOME=str(home), TERM="dumb", COLUMNS="200")
        argv = [str(SIGNERY), *map(str, args)]
        pid, fd = pty.fork()
        if pid == 0:  # the child: exec at once, nothing of pytest's runs here
            try:
                os.chdir(cwd)
                os.execve(argv[0], argv, env)  # noqa: S606 - the program under test, by its full path
            finally:
                os._exit(127)
        self.pid, self.fd, self.seen = pid, fd, b""

    def _read(self, timeout: float) -> bool:
        ready, _, _ = select.select([self.fd], [], [], timeout)
        if not ready:
            return True
        try:
            chunk = os.read(self.fd, 4096)
        except OSError:  # EIO: the child has gone and closed the terminal
            return False
        self.seen += chunk
        return bool(chunk)

    def expect(self, text: bytes, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.seen:
            if time.monotonic() > deadline or not self._read(0.2):
                raise AssertionError(f"never saw {text!r}; the terminal showed {self.seen!r}")

    def type(self, line: str) -> None:
        os.write(self.fd, line.encode() + b"\r")

    def finish(self, timeout: float = 60) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self._read(0.2):
            pass
        _, status = os.waitpid(self.pid, 0)
        os.close(self.fd)
        return os.waitstatus_to_exitcode(status)


def test_keygen_encrypt_asks_twice_without_echo(tmp_path: Path) -> None:
    t = Terminal("keygen", "alice", "--encrypt", cwd=tmp_path, home=tmp_path / "home")
    t.expect(b"Passphrase for alice.private.pem: ")
    t.type(PASS)
    t.expect(b"Repeat the passphrase: ")
    t.type(PASS)
    assert t.finish() == 0, t.seen
    assert PASS.encode() not in t.seen  # typed, never shown
    assert b"encrypted" in t.seen
    data = (tmp_path / "alice.private.pem").read_bytes()
    assert b"ENCRYPTED" in data
    load_private_key(data, passphrase=PASS.encode())


def test_keygen_encrypt_refuses_two_different_passphrases(tmp_path: Path) -> None:
    t = Terminal("keygen", "alice", "--encrypt", cwd=tmp_path, home=tmp_path / "home")
    t.expect(b"Passphrase for alice.private.pem: ")
    t.type(PASS)
    t.expect(b"Repeat the passphrase: ")
    t.type(PASS + "x")
    assert t.finish() == 2
    assert b"differ" in t.seen and PASS.encode() not in t.seen
    assert not (tmp_path / "alice.private.pem").exists()


def _encrypted_key(tmp_path: Path) -> Path:
    key = tmp_path / "enc.private.pem"
    key.write_bytes(private_key_pem(generate_private_key("ecdsa-p256"), passphrase=PASS.encode()))
    return key


def test_trust_add_of_an_encrypted_key_asks_once_on_a_terminal(tmp_path: Path) -> None:
    _encrypted_key(tmp_path)
    home = tmp_path / "home"
    t = Terminal("trust", "add", "enc.private.pem", "--json", cwd=tmp_path, home=home)
    t.expect(b"Passphrase for enc.private.pem: ")
    t.type(PASS)
    assert t.finish() == 0, t.seen
    assert PASS.encode() not in t.seen
    doc = json.loads(t.seen[t.seen.index(b"{") :].decode())
    assert doc["ok"] is True and doc["added"][0]["name"] == "enc"
    stored = (home / "trust.json").read_text()
    assert "PRIVATE" not in stored and PASS not in stored


def test_a_wrong_passphrase_typed_is_refused_not_asked_again(tmp_path: Path) -> None:
    _encrypted_key(tmp_path)
    t = Terminal("trust", "add", "enc.private.pem", cwd=tmp_path, home=tmp_path / "home")
    t.expect(b"Passphrase for enc.private.pem: ")
    t.type("wrong")
    assert t.finish() == 2
    assert t.seen.count(b"Passphrase for") == 1 and b"wrong passphrase" in t.seen
    assert b"wrong\r" not in t.seen.split(b"Passphrase for", 1)[1][:40]  # not echoed either


def test_a_passphrase_given_is_not_asked_for(tmp_path: Path) -> None:
    _encrypted_key(tmp_path)
    (tmp_path / "pw").write_text(PASS + "\n")
    t = Terminal("trust", "add", "enc.private.pem", "--passphrase-file", "pw", cwd=tmp_path, home=tmp_path / "home")
    assert t.finish() == 0, t.seen
    assert b"Passphrase for" not in t.seen and b"trusted enc" in t.seen


def test_the_library_messages_that_trigger_the_prompt() -> None:
    """What ``unlock`` recognises: keys.load_private_key's and openpgp's missing-passphrase errors (and only them)."""
    pem = private_key_pem(generate_private_key("ed25519"), passphrase=PASS.encode())
    with pytest.raises(SigneryError) as pem_err:
        load_private_key(pem, source="k.pem")
    assert needs_passphrase(pem_err.value) and pem_err.value.subject == "k.pem"
    secret = openpgp.generate_key("P <p@example.org>", algorithm="ed25519", passphrase=PASS.encode()).secret_armored
    with pytest.raises(SigneryError) as pgp_err:
        openpgp.load_signer(secret.encode(), source="k.asc")
    assert needs_passphrase(pgp_err.value) and pgp_err.value.subject == "k.asc"
    with pytest.raises(SigneryError) as wrong:
        openpgp.load_signer(secret.encode(), passphrase=b"nope", source="k.asc")
    assert not needs_passphrase(wrong.value)
