"""The Mattermost server against a real ``signery registry`` on loopback.

The server's query construction (``MarketplacePluginFilter.ToValues``) and version selection (``GetPlugin``,
``GetLatestPlugin``) are replayed in Python; its signature check (``plugin_signature.go verifySignature``:
``openpgp.ReadKeyRing`` + ``openpgp.CheckDetachedSignature``) runs as a Go program built from Debian's
``golang-golang-x-crypto-dev`` (the legacy ``openpgp`` package Mattermost links), with no module proxy.
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest

from support import missing

from .conftest import LiveRegistry
from .hostkit import PgpKey, first_issuer, live_registry, mattermost_bundle, pgp_key, pgp_sign, publish

GOCODE = Path("/usr/share/gocode")
BUILD_DIR = Path(os.environ.get("SIGNERY_TEST_GO_DIR", "/tmp/signery-test-go"))

# server/channels/app/plugin_signature.go, verifySignature and decodeIfArmored, as the server runs them.
VERIFY_GO = r"""
package main

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"io"
	"os"

	"golang.org/x/crypto/openpgp"
	"golang.org/x/crypto/openpgp/armor"
)

func decodeIfArmored(reader io.Reader) (io.Reader, error) {
	readBytes, err := io.ReadAll(reader)
	if err != nil {
		return nil, err
	}
	block, err := armor.Decode(bytes.NewReader(readBytes))
	if err != nil {
		return bytes.NewReader(readBytes), nil
	}
	return block.Body, nil
}

func verifySignature(publicKey, message, signature io.Reader) error {
	pk, err := decodeIfArmored(publicKey)
	if err != nil {
		return err
	}
	sig, err := decodeIfArmored(signature)
	if err != nil {
		return err
	}
	keyring, err := openpgp.ReadKeyRing(pk)
	if err != nil {
		return err
	}
	_, err = openpgp.CheckDetachedSignature(keyring, message, sig)
	return err
}

func main() {
	key, _ := os.Open(os.Args[1])
	bundle, _ := os.Open(os.Args[2])
	encoded, _ := os.ReadFile(os.Args[3])
	sig, err := base64.StdEncoding.DecodeString(string(bytes.TrimSpace(encoded)))
	if err != nil {
		fmt.Println("error", err)
		os.Exit(2)
	}
	if err := verifySignature(key, bundle, bytes.NewReader(sig)); err != nil {
		fmt.Println("refused", err)
		return
	}
	fmt.Println("verified")
}
"""


@pytest.fixture(scope="module")
def go_verifier() -> Path:
    if shutil.which("go") is None or not (GOCODE / "src/golang.org/x/crypto/openpgp").is_dir():
        missing("go and Debian's golang-golang-x-crypto-dev are needed")
    src = BUILD_DIR / "src" / "mmverify"
    src.mkdir(parents=True, exist_ok=True)
    (src / "main.go").write_text(VERIFY_GO)
    binary = BUILD_DIR / "mmverify"
    env = {
        **os.environ,
        "GO111MODULE": "off",
        "GOPATH": f"{BUILD_DIR}:{GOCODE}",
        "GOFLAGS": "",
        "GOPROXY": "off",
        "GOCACHE": str(BUILD_DIR / "cache"),
    }
    proc = subprocess.run(
        ["go", "build", "-o", str(binary), "mmverify"], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    return binary


def mattermost_verify(verifier: Path, key: Path, bundle: Path, signature_b64: str, tmp: Path) -> str:
    sig_file = tmp / "signature.b64"
    sig_file.write_text(signature_b64)
    proc = subprocess.run([str(verifier), str(key), str(bundle), str(sig_file)], capture_output=True, text=True)
    return (proc.stdout + proc.stderr).strip()


# -- the server's side (server/public/model/marketplace_plugin.go, server/channels/app/plugin.go) -------------


def to_values(
    *, plugin_id: str = "", return_all_versions: bool = False, server_version: str = "10.11.0", per_page: int = -1
) -> str:
    """``MarketplacePluginFilter.ToValues().Encode()``: every key, ``per_page`` only above 0, keys sorted."""
    values: dict[str, str] = {
        "page": "0",
        "filter": "",
        "server_version": server_version,
        "build_enterprise_ready": "false",
        "enterprise_plugins": "false",
        "cloud": "false",
        "local_only": "false",
        "remote_only": "false",
        "platform": "linux-amd64",
        "plugin_id": plugin_id,
        "return_all_versions": "true" if return_all_versions else "false",
    }
    if per_page > 0:
        values["per_page"] = str(per_page)
    return urlencode(sorted(values.items()))


def get_plugins(live: LiveRegistry, query: str) -> list[dict[str, Any]]:
    r = httpx.get(f"{live.url}/mattermost/api/v1/plugins?{query}")
    assert r.status_code == 200, r.text
    doc = r.json()
    assert isinstance(doc, list)
    return doc


def get_plugin(live: LiveRegistry, plugin_id: str, version: str) -> dict[str, Any]:
    """``GetPlugin``: all versions, the one whose ``manifest.version`` is ``version``."""
    for p in get_plugins(live, to_values(plugin_id=plugin_id, return_all_versions=True)):
        if p["manifest"]["version"] == version:
            return p
    raise LookupError(f"{plugin_id} {version} not found")


def get_latest_plugin(live: LiveRegistry, plugin_id: str, server_version: str = "10.11.0") -> dict[str, Any]:
    """``GetLatestPlugin``: exactly one entry, or an error."""
    found = get_plugins(live, to_values(plugin_id=plugin_id, server_version=server_version))
    if len(found) != 1:
        raise LookupError(f"expected one plugin, got {len(found)}")
    return found[0]


def download(entry: dict[str, Any], dest: Path, *, allow_insecure: bool) -> Path:
    """``downloadFromURL``: a 2xx answer, refusing ``http:`` unless ``AllowInsecureDownloadURL``."""
    url = entry["download_url"]
    if not url.startswith("https://") and not allow_insecure:
        raise PermissionError("insecure url not allowed")
    r = httpx.get(url, follow_redirects=True)
    r.raise_for_status()
    dest.write_bytes(r.content)
    return dest


@pytest.fixture(scope="module")
def release_key() -> PgpKey:
    return pgp_key("Release <release@example.org>")


@pytest.fixture(scope="module")
def eddsa_key() -> PgpKey:
    return pgp_key("Author <author@example.org>", "ed25519")


@pytest.fixture()
def market(tmp_path: Path) -> Iterator[LiveRegistry]:
    with live_registry(tmp_path / "data") as live:
        yield live


def test_install_sequence_verifies_in_go(
    market: LiveRegistry, tmp_path: Path, go_verifier: Path, release_key: PgpKey, eddsa_key: PgpKey
) -> None:
    src = tmp_path / "src"
    old = mattermost_bundle(src / "a", "com.acme.antivirus", "0.1.0")
    new = mattermost_bundle(src / "b", "com.acme.antivirus", "0.2.0", min_server_version="10.0.0")
    pgp_sign(old, [release_key], armored=False)
    stored = pgp_sign(new, [eddsa_key, release_key], armored=True)  # an EdDSA author signature first
    assert publish(market, old).exit_code == 0
    assert publish(market, new).exit_code == 0
    key = release_key.public_file(tmp_path, "release")

    latest = get_latest_plugin(market, "com.acme.antivirus")
    assert latest["manifest"]["version"] == "0.2.0" and latest["manifest"]["id"] == "com.acme.antivirus"
    with pytest.raises(PermissionError):
        download(latest, tmp_path / "x.tar.gz", allow_insecure=False)
    bundle = download(latest, tmp_path / "latest.tar.gz", allow_insecure=True)
    assert bundle.read_bytes() == new.read_bytes()
    served = base64.b64decode(latest["signature"], validate=True)
    assert first_issuer(served) == release_key.fingerprint  # RSA packets only: Go cannot read the EdDSA one
    assert mattermost_verify(go_verifier, key, bundle, latest["signature"], tmp_path) == "verified"
    # What was published, EdDSA packet included, is what the Go verifier would refuse.
    as_stored = base64.b64encode(stored.read_bytes()).decode()
    assert mattermost_verify(go_verifier, key, bundle, as_stored, tmp_path).startswith("refused")

    given = get_plugin(market, "com.acme.antivirus", "0.1.0")
    bundle = download(given, tmp_path / "old.tar.gz", allow_insecure=True)
    assert mattermost_verify(go_verifier, key, bundle, given["signature"], tmp_path) == "verified"
    tampered = tmp_path / "tampered.tar.gz"
    tampered.write_bytes(bundle.read_bytes()[:-1] + bytes([bundle.read_bytes()[-1] ^ 1]))
    assert mattermost_verify(go_verifier, key, tampered, given["signature"], tmp_path).startswith("refused")
    # Another key in SignaturePublicKeyFiles does not verify it.
    other = pgp_key("Other <other@example.org>").public_file(tmp_path, "other")
    assert mattermost_verify(go_verifier, other, bundle, given["signature"], tmp_path).startswith("refused")

    # server_version against min_server_version: a 9.x server gets 0.1.0, the only one it can run.
    assert get_latest_plugin(market, "com.acme.antivirus", server_version="9.5.0")["manifest"]["version"] == "0.1.0"


def test_listing_paging_filters_and_edge_cases(market: LiveRegistry, tmp_path: Path, release_key: PgpKey) -> None:
    for i, pid in enumerate(["com.acme.zeta", "com.acme.alpha", "com.acme.mid"]):
        b = mattermost_bundle(tmp_path / pid, pid, f"1.{i}.0", description=f"plugin number {i}")
        pgp_sign(b, [release_key], armored=False)
        assert publish(market, b).exit_code == 0
    listing = get_plugins(market, to_values())
    assert [p["manifest"]["id"] for p in listing] == ["com.acme.alpha", "com.acme.mid", "com.acme.zeta"]
    for p in listing:
        assert p["manifest"] is not None and p["download_url"].startswith("http://127.0.0.1:")
        assert base64.b64decode(p["signature"])
    assert [p["manifest"]["id"] for p in get_plugins(market, to_values(per_page=2))] == [
        "com.acme.alpha",
        "com.acme.mid",
    ]
    page1 = to_values(per_page=2).replace("page=0", "page=1")
    assert [p["manifest"]["id"] for p in get_plugins(market, page1)] == ["com.acme.zeta"]
    assert get_plugins(market, to_values().replace("filter=", "filter=NUMBER+2")) == get_plugins(
        market, to_values(plugin_id="com.acme.mid")
    )
    assert get_plugins(market, to_values(plugin_id="com.nobody")) == []  # [], never null
    with pytest.raises(LookupError):
        get_latest_plugin(market, "com.nobody")
    r = httpx.get(f"{market.url}/mattermost/plugins/com.acme.alpha/9.9.9/x.tar.gz")
    assert r.status_code == 404


def test_publish_refuses_eddsa_only_mattermost_plugin(market: LiveRegistry, tmp_path: Path, eddsa_key: PgpKey) -> None:
    b = mattermost_bundle(tmp_path, "com.acme.edonly", "1.0.0")
    pgp_sign(b, [eddsa_key], armored=False)
    refused = publish(market, b)
    assert refused.exit_code == 1, refused.output
    assert '"reason": "policy-violation"' in refused.output and "RSA" in refused.output
    assert market.store.search("edonly") == []  # nothing published
    forced = publish(market, b, "--allow-unverifiable")
    assert forced.exit_code == 0, forced.output
    # Published, but not offered to Mattermost, which could not verify it.
    assert get_plugins(market, to_values(plugin_id="com.acme.edonly")) == []
