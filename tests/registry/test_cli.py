"""The ``registry``, ``publish``, ``search`` and ``mirror`` commands, in-process against a real uvicorn, and
``signery registry serve`` as a real subprocess."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from signery.cli import cli

from .conftest import LiveRegistry, dify_package


def run(args: list[str], env: dict[str, str] | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(cli, args, env=env, catch_exceptions=False)
    return result.exit_code, result.output


def test_token_commands(tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    code, out = run(["registry", "token", "create", "--data", data, "--name", "ci", "--scope", "acme-*"])
    assert code == 0 and out.splitlines()[0].startswith("sgy_")
    code, out = run(["registry", "token", "create", "--data", data, "--name", "ci"])
    assert code == 2  # names are unique
    code, out = run(["registry", "token", "list", "--data", data, "--json"])
    doc = json.loads(out)
    assert [(t["name"], t["scopes"], t["revoked_at"]) for t in doc["tokens"]] == [("ci", ["acme-*"], None)]
    assert "sgy_" not in out
    assert run(["registry", "token", "revoke", "--data", data, "ci"])[0] == 0
    assert run(["registry", "token", "revoke", "--data", data, "nobody"])[0] == 2


def test_publish_search_mirror(live: LiveRegistry, tmp_path: Path) -> None:
    pkg = dify_package(tmp_path, "demo", "1.0.0")
    sig = tmp_path / f"{pkg.name}.sig"
    sig.write_bytes(b"opaque openpgp bytes")
    env = {"SIGNERY_REGISTRY_TOKEN": live.token}
    code, out = run(["publish", str(pkg), "--signature", str(sig), "--registry", live.url], env)
    assert code == 0 and "published demo@1.0.0" in out
    code, out = run(["publish", str(pkg), "--registry", live.url], {"SIGNERY_REGISTRY_TOKEN": "sgy_bad"})
    assert code == 1 and "policy-violation" in out
    code, out = run(["publish", str(pkg), "--registry", live.url], {"SIGNERY_REGISTRY_TOKEN": ""})
    assert code == 2
    rebuilt = dify_package(tmp_path / "r", "demo", "1.0.0", extra="x")
    assert run(["publish", str(rebuilt), "--registry", live.url, "--json"], env)[0] == 2  # 409: immutable
    code, out = run(["search", "dem", "--registry", live.url])
    assert code == 0 and out.split() == ["demo", "1.0.0", "signed"]
    bundle = tmp_path / "b.tar"
    code, out = run(["mirror", "export", "demo@1.0.0", "--registry", live.url, "--out", str(bundle)])
    assert code == 0 and bundle.is_file()
    code, out = run(["mirror", "import", str(bundle), "--registry", live.url, "--json"], env)
    assert code == 0 and json.loads(out)["packages"][0]["created"] is False


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_serve_subprocess(tmp_path: Path) -> None:
    port = _free_port()
    data = tmp_path / "data"
    exe = [sys.executable, "-m", "signery"]
    proc = subprocess.Popen(
        [*exe, "registry", "serve", "--data", str(data), "--port", str(port), "--require-signatures"],
        env={**os.environ},
        stderr=subprocess.PIPE,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/healthz").status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        token = run(["registry", "token", "create", "--data", str(data), "--name", "ci"])[1].splitlines()[0]
        env = {"SIGNERY_REGISTRY_TOKEN": token}
        pkg = dify_package(tmp_path, "demo", "1.0.0")
        code, out = run(["publish", str(pkg), "--registry", url], env)
        assert code == 1 and "unsigned" in out
        assert httpx.get(f"{url}/docs").status_code == 200
    finally:
        proc.terminate()
        proc.wait(10)
