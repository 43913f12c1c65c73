"""A throwaway SoftHSM2 token directory for the PKCS#11 tests (the library and the CLI)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from support import missing, require_tool

MODULE = "/usr/lib/softhsm/libsofthsm2.so"
PIN, SO_PIN = "1234", "5678"
TOKENS = ("build", "gone", "spare")


class SoftHSM:
    """A SoftHSM2 configuration of its own (SOFTHSM2_CONF) with freshly initialised tokens."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.tokendir = root / "tokens"
        self.tokendir.mkdir()
        self.conf = root / "softhsm2.conf"
        self.conf.write_text(f"directories.tokendir = {self.tokendir}\nobjectstore.backend = file\nlog.level = ERROR\n")
        self.env = {**os.environ, "SOFTHSM2_CONF": str(self.conf)}

    def init_token(self, label: str) -> None:
        subprocess.run(
            ["softhsm2-util", "--init-token", "--free", "--label", label, "--pin", PIN, "--so-pin", SO_PIN],
            env=self.env,
            check=True,
            capture_output=True,
        )

    def token_dir(self, label: str) -> Path:
        for d in self.tokendir.iterdir():
            if f"label={label}" in self.show(d):
                return d
        raise LookupError(label)

    def show(self, d: Path) -> str:
        # token.object holds the label padded to 32 bytes; that is enough to tell our tokens apart.
        data = (d / "token.object").read_bytes()
        return "".join(f"label={t}" for t in TOKENS if t.encode().ljust(32) in data)

    def uri(self, token: str, label: str, *, pin: str | None = PIN, extra: str = "") -> str:
        query = f"module-path={MODULE}" + (f"&pin-value={pin}" if pin is not None else "")
        return f"pkcs11:token={token};object={label}{extra}?{query}"



def softhsm_token(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SoftHSM]:
    """A fresh SoftHSM2 with the tokens of :data:`TOKENS`, as the process's configuration, for one test module."""
    if not Path(MODULE).exists():
        missing(f"SoftHSM2 is not installed: {MODULE} is absent (apt-get install softhsm2)")
    require_tool("softhsm2-util")
    import pkcs11

    h = SoftHSM(tmp_path_factory.mktemp("softhsm"))
    for label in TOKENS:
        h.init_token(label)
    old = os.environ.get("SOFTHSM2_CONF")
    os.environ["SOFTHSM2_CONF"] = str(h.conf)
    pkcs11.lib(MODULE).reinitialize()  # SoftHSM2 reads its configuration and token list when initialised
    yield h
    if old is None:
        os.environ.pop("SOFTHSM2_CONF", None)
    else:
        os.environ["SOFTHSM2_CONF"] = old
