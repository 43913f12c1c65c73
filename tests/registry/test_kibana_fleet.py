"""Kibana Fleet against a real ``signery registry`` on loopback: EPR's request sequence, and Kibana's own
verification (``package_verification.ts``) repeated call for call in Node with npm ``openpgp`` 5.x and 6.x.

The npm packages are installed at test time into a cache directory (``npm install --prefix DIR openpgp@5``);
the test is skipped when node or npm is missing or the install cannot reach the registry.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from support import missing

from .conftest import LiveRegistry
from .hostkit import PgpKey, elastic_zip, first_issuer, live_registry, pgp_key, pgp_sign, publish

NPM_CACHE = Path(os.environ.get("SIGNERY_TEST_NPM_DIR", "/tmp/signery-test-npm"))
OPENPGP_VERSIONS = ("5", "6")

# Kibana: x-pack/platform/plugins/shared/fleet/server/services/epm/packages/package_verification.ts
# (_readGpgKey, then _verifyPackageSignature), one step per line.
KIBANA_VERIFY = r"""
const openpgp = require(process.argv[2]);
const fs = require('fs');
(async () => {
  const armoredKey = fs.readFileSync(process.argv[3], 'utf8');
  const verificationKey = await openpgp.readKey({ armoredKey });
  const pkgArchiveSignature = fs.readFileSync(process.argv[4], 'utf8');
  const pkgArchiveBuffer = fs.readFileSync(process.argv[5]);
  const signature = await openpgp.readSignature({ armoredSignature: pkgArchiveSignature });
  const message = await openpgp.createMessage({ binary: pkgArchiveBuffer });
  const { signatures: [signatureVerificationResult] } = await openpgp.verify({
    verificationKeys: verificationKey,
    signature,
    message,
    format: 'binary',
    config: { allowInsecureVerificationWithReformattedKeys: true },
  });
  let isVerified = false;
  try {
    isVerified = await signatureVerificationResult.verified;
  } catch (e) {
    console.log('unverified ' + e.message);
    return;
  }
  console.log((isVerified ? 'verified ' : 'unverified ') + verificationKey.getKeyID().toHex());
})().catch((e) => { console.log('error ' + e.message); process.exit(3); });
"""


def _openpgp_module(major: str) -> Path:
    if shutil.which("node") is None or shutil.which("npm") is None:
        missing("node and npm are needed for the Kibana verification replay")
    prefix = NPM_CACHE / f"openpgp{major}"
    module = prefix / "node_modules" / "openpgp"
    if not (module / "package.json").is_file():
        prefix.mkdir(parents=True, exist_ok=True)
        proc = subprocess.run(
            ["npm", "install", "--silent", "--no-audit", "--no-fund", "--prefix", str(prefix), f"openpgp@{major}"],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if proc.returncode != 0 or not (module / "package.json").is_file():
            missing(f"npm install openpgp@{major} failed: {proc.stderr.strip()[:300]}")
    return module


def kibana_verify(major: str, key: Path, sig: Path, zip_path: Path) -> str:
    script = NPM_CACHE / "kibana_verify.js"
    NPM_CACHE.mkdir(parents=True, exist_ok=True)
    script.write_text(KIBANA_VERIFY)
    proc = subprocess.run(
        ["node", str(script), str(_openpgp_module(major)), str(key), str(sig), str(zip_path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return (proc.stdout + proc.stderr).strip()


@pytest.fixture(scope="module")
def kibana_key() -> PgpKey:
    return pgp_key("Fleet <fleet@example.org>")


@pytest.fixture(scope="module")
def author_key() -> PgpKey:
    return pgp_key("Author <author@example.org>", "ed25519")


@pytest.fixture()
def epr(tmp_path: Path, kibana_key: PgpKey) -> Iterator[LiveRegistry]:
    with live_registry(tmp_path / "data", kibana_keys=frozenset({kibana_key.fingerprint})) as live:
        yield live


def kibana_fetch(live: LiveRegistry, name: str, out: Path, kibana_version: str = "8.15.0") -> tuple[Path, Path]:
    """Kibana's sequence: find the latest (``_fetchFindLatestPackage``), its info (``fetchInfo``), then the archive
    and its signature at the paths the info names (``getPackageArchiveSignatureOrUndefined``)."""
    base = f"{live.url}/elastic"
    headers = {"User-Agent": "Kibana/8.15.0 node-fetch"}
    with httpx.Client(headers=headers) as http:
        r = http.get(
            f"{base}/search", params={"package": name, "prerelease": "false", "kibana.version": kibana_version}
        )
        assert r.status_code == 200, r.text
        latest = r.json()[0]
        r = http.get(f"{base}/package/{name}/{latest['version']}/")
        assert r.status_code == 200, r.text
        info = r.json()
        zip_bytes = http.get(f"{base}{info['download']}")
        sig_text = http.get(f"{base}{info['signature_path']}")
        assert zip_bytes.status_code == 200 and sig_text.status_code == 200
    out.mkdir(parents=True, exist_ok=True)
    zip_path = out / Path(info["download"]).name
    zip_path.write_bytes(zip_bytes.content)
    sig_path = out / (zip_path.name + ".sig")
    sig_path.write_text(sig_text.text)
    return zip_path, sig_path


@pytest.mark.parametrize("major", OPENPGP_VERSIONS)
def test_kibana_installs_verified_and_refuses_tampered(
    major: str, epr: LiveRegistry, tmp_path: Path, kibana_key: PgpKey
) -> None:
    pkg = elastic_zip(tmp_path / "src", "acme_logs", "1.2.0")
    original = pkg.read_bytes()
    pgp_sign(pkg, [kibana_key])
    assert publish(epr, pkg).exit_code == 0
    key_file = kibana_key.public_file(tmp_path, "fleet")

    zip_path, sig_path = kibana_fetch(epr, "acme_logs", tmp_path / "got")
    assert zip_path.read_bytes() == original  # the zip layout (acme_logs-1.2.0/...) is served unchanged
    assert sig_path.read_text().startswith("-----BEGIN PGP SIGNATURE-----")
    assert kibana_verify(major, key_file, sig_path, zip_path) == f"verified {kibana_key.fingerprint[-16:].lower()}"

    # The blob changed at rest (same size): Kibana downloads it, and it does not verify.
    blob = epr.store.blobs.path(epr.store.get_version("acme_logs", "1.2.0").sha256)
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0x01
    blob.write_bytes(bytes(data))
    zip_path, sig_path = kibana_fetch(epr, "acme_logs", tmp_path / "tampered")
    assert kibana_verify(major, key_file, sig_path, zip_path).startswith("unverified")


@pytest.mark.parametrize("major", OPENPGP_VERSIONS)
def test_kibana_verifies_author_signature_plus_countersignature(
    major: str, epr: LiveRegistry, tmp_path: Path, kibana_key: PgpKey, author_key: PgpKey
) -> None:
    pkg = elastic_zip(tmp_path / "src", "acme_metrics", "2.0.0")
    sig = pgp_sign(pkg, [author_key, kibana_key])  # the author's first, as it was made; Kibana reads only [0]
    assert first_issuer(sig.read_bytes()) == author_key.fingerprint
    assert publish(epr, pkg).exit_code == 0
    zip_path, sig_path = kibana_fetch(epr, "acme_metrics", tmp_path / "got")
    assert first_issuer(sig_path.read_bytes()) == kibana_key.fingerprint  # served: the configured key first
    key_file = kibana_key.public_file(tmp_path, "fleet")
    assert kibana_verify(major, key_file, sig_path, zip_path).startswith("verified")
    # The file as the author made it (countersignature second) is what Kibana would have refused.
    assert kibana_verify(major, key_file, sig, zip_path).startswith("unverified")


def test_publish_refuses_an_elastic_package_kibana_cannot_verify(
    epr: LiveRegistry, tmp_path: Path, author_key: PgpKey
) -> None:
    pkg = elastic_zip(tmp_path / "src", "acme_audit", "1.0.0")
    pgp_sign(pkg, [author_key])  # not the key Kibana is configured with
    refused = publish(epr, pkg)
    assert refused.exit_code == 1 and '"reason": "policy-violation"' in refused.output
    assert "Kibana" in refused.output
    forced = publish(epr, pkg, "--allow-unverifiable")
    assert forced.exit_code == 0, forced.output


# -- EPR semantics, without node --------------------------------------------------------------------------------


def test_search_filters_as_epr(epr: LiveRegistry, tmp_path: Path, kibana_key: PgpKey) -> None:
    src = tmp_path / "src"
    versions: dict[tuple[str, str], dict[str, Any]] = {
        ("acme_logs", "1.0.0"): {},
        ("acme_logs", "1.1.0"): {},
        ("acme_logs", "1.2.0-rc1"): {},
        ("acme_logs", "2.0.0"): {"conditions": {"kibana": {"version": "^9.0.0"}}},
        ("beta_thing", "0.1.0"): {"release": "experimental", "categories": ["observability"]},
        ("net_flow", "3.0.0"): {"categories": ["network"], "type": "input"},
    }
    for (name, version), extra in versions.items():
        pkg = elastic_zip(src / f"{name}-{version}", name, version, **extra)
        pgp_sign(pkg, [kibana_key])
        assert publish(epr, pkg).exit_code == 0
    base = f"{epr.url}/elastic"

    def search(**params: str) -> list[tuple[str, str]]:
        r = httpx.get(f"{base}/search", params=params)
        assert r.status_code == 200, r.text
        return [(p["name"], p["version"]) for p in r.json()]

    assert search(package="acme_logs", **{"kibana.version": "8.15.0"}) == [("acme_logs", "1.1.0")]
    assert search(package="acme_logs", **{"kibana.version": "9.1.0"}) == [("acme_logs", "2.0.0")]
    assert search(package="acme_logs", prerelease="true", **{"kibana.version": "8.15.0"}) == [
        ("acme_logs", "1.2.0-rc1")
    ]
    assert search(package="acme_logs", all="true", **{"kibana.version": "8.15.0"}) == [
        ("acme_logs", "1.1.0"),
        ("acme_logs", "1.0.0"),
    ]
    assert search(package="beta_thing") == []  # experimental: hidden unless prerelease=true
    assert search(package="beta_thing", prerelease="true") == [("beta_thing", "0.1.0")]
    assert search(package="nothing_here") == []
    assert search(category="network") == [("net_flow", "3.0.0")]
    assert search(type="input") == [("net_flow", "3.0.0")]
    assert search(**{"kibana.version": "8.15.0"}) == [("acme_logs", "1.1.0"), ("net_flow", "3.0.0")]

    entry = httpx.get(f"{base}/search", params={"package": "net_flow"}).json()[0]
    for key in (
        "name",
        "title",
        "version",
        "release",
        "description",
        "type",
        "download",
        "path",
        "icons",
        "policy_templates",
        "conditions",
        "owner",
        "categories",
        "signature_path",
        "format_version",
    ):
        assert key in entry, key
    assert entry["download"] == "/epr/net_flow/net_flow-3.0.0.zip"
    assert entry["signature_path"] == "/epr/net_flow/net_flow-3.0.0.zip.sig"
    assert entry["icons"][0]["path"] == "/package/net_flow/3.0.0/img/icon.svg"

    cats = httpx.get(f"{base}/categories", params={"kibana.version": "8.15.0"}).json()
    assert {c["id"]: c["count"] for c in cats} == {"network": 1, "security": 1}
    assert all(set(c) == {"id", "title", "count"} for c in cats)

    info = httpx.get(f"{base}/package/net_flow/3.0.0/").json()
    assert info["readme"] == "/package/net_flow/3.0.0/docs/README.md"
    assert httpx.get(f"{base}{info['readme']}").text.startswith("# net_flow")
    icon = httpx.get(f"{base}{entry['icons'][0]['path']}")
    assert icon.status_code == 200 and icon.headers["content-type"].startswith("image/svg")
    assert httpx.get(f"{base}/package/net_flow/3.0/").status_code == 400  # strict semver, as EPR
    assert httpx.get(f"{base}/package/net_flow/9.9.9/").status_code == 404
    assert httpx.get(f"{base}/package/net_flow/3.0.0/no/such.md").status_code == 404
    assert httpx.get(f"{base}/epr/net_flow/net_flow-9.9.9.zip").status_code == 404
