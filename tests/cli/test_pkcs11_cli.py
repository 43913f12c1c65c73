"""PKCS#11 keys through the command line: `keygen --pkcs11` makes the key inside a real SoftHSM2 token, and
`sign --key pkcs11:...` signs every PKIX format with it (the PIN from the URI, from --pin-env, or typed)."""

from __future__ import annotations

import json
import os
import shutil
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from signery.cli import cli
from signery.policy import ENV_VARS
from softhsm import MODULE, PIN, SoftHSM, softhsm_token


@pytest.fixture(scope="module")
def hsm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SoftHSM]:
    yield from softhsm_token(tmp_path_factory)


def run(*args: object, env: dict[str, str | None] | None = None) -> tuple[int, str, str]:
    clean: dict[str, str | None] = dict.fromkeys(ENV_VARS)
    clean.update(env or {})
    r = CliRunner().invoke(cli, [str(a) for a in args], env=clean, catch_exceptions=False)
    return r.exit_code, r.stdout, r.stderr


def _zip(path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("manifest.yaml", "name: demo\nversion: 0.0.1\nauthor: acme\n")
        zf.writestr("main.py", "print('hi')\n")
    return path


def test_keygen_in_the_token_then_sign_native_and_verify(hsm: SoftHSM, tmp_path: Path, home: Path) -> None:
    uri = f"pkcs11:token=build;object=cli-release?module-path={MODULE}"
    code, out, err = run(
        "keygen", "release", "--pkcs11", uri, "--algorithm", "ecdsa-p256", "--pin-env", "TOKEN_PIN",
        "--out-dir", tmp_path, "--json", env={"TOKEN_PIN": PIN},
    )  # fmt: skip
    assert code == 0, err
    doc = json.loads(out)
    assert doc["ok"] and not (tmp_path / "release.private.pem").exists()  # nothing private leaves the token
    assert PIN not in out and PIN not in err
    pkg = _zip(tmp_path / "plugin.zip")
    code, out, err = run("sign", pkg, "--key", uri, "--pin-env", "TOKEN_PIN", "--json", env={"TOKEN_PIN": PIN})
    assert code == 0, err
    assert json.loads(out)["key_id"] == doc["key_id"]
    code, _, err = run("verify", tmp_path / "plugin.signed.zip", "--key", tmp_path / "release.public.pem")
    assert code == 0, err
    # the same key generated twice is refused: a label names one key
    code, _, err = run("keygen", "again", "--pkcs11", uri, "--pin-env", "TOKEN_PIN", env={"TOKEN_PIN": PIN})
    assert code != 0 and "Traceback" not in err


def test_a_dify_package_signed_in_the_token_verifies(hsm: SoftHSM, tmp_path: Path, vectors: Path, home: Path) -> None:
    uri = f"pkcs11:token=build;object=cli-dify?module-path={MODULE}&pin-value={PIN}"
    code, _, err = run("keygen", "dify", "--format", "dify", "--pkcs11", uri, "--out-dir", tmp_path)
    assert code == 0, err
    pkg = Path(shutil.copy(vectors / "dify" / "dummy_plugin.difypkg", tmp_path / "dummy_plugin.difypkg"))
    code, out, err = run("sign", pkg, "--key", uri, "--json")  # an RSA token key and a .difypkg: Dify, inferred
    assert code == 0, err
    assert json.loads(out)["format"] == "dify"
    code, _, err = run("verify", tmp_path / "dummy_plugin.signed.difypkg", "--key", tmp_path / "dify.public.pem")
    assert code == 0, err


def test_a_wrong_pin_is_a_config_error_that_never_shows_it(hsm: SoftHSM, tmp_path: Path, home: Path) -> None:
    uri = f"pkcs11:token=spare;object=nothing?module-path={MODULE}"
    pkg = _zip(tmp_path / "plugin.zip")
    code, out, err = run("sign", pkg, "--key", uri, "--pin-env", "P", "--json", env={"P": "0000-wrong"})
    assert code == 3 or code == 2
    doc = json.loads(out)
    assert doc["ok"] is False and doc["reason"] in ("config-error", "unknown-key")
    assert "0000-wrong" not in out + err
    assert not (tmp_path / "plugin.signed.zip").exists()


def test_the_pin_is_asked_on_a_terminal_and_not_echoed(hsm: SoftHSM, tmp_path: Path) -> None:
    import pty

    uri = f"pkcs11:token=build;object=cli-tty?module-path={MODULE}"
    env = {**os.environ, "SIGNERY_HOME": str(tmp_path / "home")}
    env.pop("PYTHONWARNINGS", None)
    code, _, err = run("keygen", "tty", "--pkcs11", uri, "--pin-env", "P", "--out-dir", tmp_path, env={"P": PIN})
    assert code == 0, err
    pkg = _zip(tmp_path / "plugin.zip")
    signery = Path(os.environ.get("VIRTUAL_ENV", ".venv")) / "bin" / "signery"
    if not signery.exists():
        signery = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "signery"
    pid, fd = pty.fork()
    if pid == 0:  # the child: signery on the pseudo-terminal
        os.execve(str(signery), [str(signery), "sign", str(pkg), "--key", uri], env)  # noqa: S606 - no shell wanted
    seen = b""
    try:
        while b"PIN for" not in seen:
            seen += os.read(fd, 1024)
        os.write(fd, PIN.encode() + b"\n")
        while True:
            try:
                chunk = os.read(fd, 1024)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
    finally:
        _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, seen.decode(errors="replace")
    assert PIN.encode() not in seen  # never echoed
    assert (tmp_path / "plugin.signed.zip").is_file()
