"""The Dify API and plugin daemon against a real ``signery registry`` on loopback.

Replays ``api/core/helper/download.py download_with_size_limit`` (HEAD, then a streamed GET following redirects,
the size cap, 404 as "file not found") on both download URL forms, verifies the bytes with signery's Dify
verifier, and recomputes the daemon's unique identifier (``decoder/checksum.go CalculateChecksum``) independently
to compare it with ``/batch`` and ``dist/plugins/manifest.json``.
"""

from __future__ import annotations

import hashlib
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from signery.formats import dify
from signery.keys import FileSigner
from signery.trust import TrustSet, trusted_key_from_public

from .conftest import LiveRegistry
from .hostkit import dify_zip, live_registry, publish

PLUGIN_MAX_PACKAGE_SIZE = 15728640  # api/configs/feature
# pkg/entities/plugin_entities/identity.go
IDENTIFIER = re.compile(r"([a-z0-9_-]{1,64}/)?[a-z0-9_-]{1,255}:\d{1,4}(\.\d{1,4}){1,3}(-\w{1,16})?@[a-f0-9]{32,64}")


class FileNotFound(Exception):
    pass


class TooLarge(Exception):
    pass


def download_with_size_limit(url: str, max_size: int = PLUGIN_MAX_PACKAGE_SIZE) -> bytes:
    """Dify's ``download_with_size_limit``: HEAD (404 → not found, Content-Length over the cap → refused), then a
    streamed GET with redirects followed, 404 → not found, the cap applied to the bytes as they arrive."""
    with httpx.Client(follow_redirects=True) as http:
        head = http.head(url)
        if head.status_code == 404:
            raise FileNotFound(url)
        length = head.headers.get("content-length")
        if head.status_code != 405 and length is not None and int(length) > max_size:
            raise TooLarge(length)
        with http.stream("GET", url) as r:
            if r.status_code == 404:
                raise FileNotFound(url)
            r.raise_for_status()
            data = b""
            for chunk in r.iter_bytes():
                data += chunk
                if len(data) > max_size:
                    raise TooLarge(len(data))
            return data


def daemon_checksum(data: bytes) -> str:
    """``CalculateChecksum``, independently: Go's Walk skips directories; sha256(path) || sha256(content)."""
    import io

    parts = {}
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        for info in z.infolist():
            if not info.is_dir():
                parts[info.filename] = hashlib.sha256(z.read(info)).digest()
    joined = b"".join(hashlib.sha256(k.encode()).digest() + parts[k] for k in sorted(parts))
    return hashlib.sha256(joined).hexdigest()


@pytest.fixture(scope="module")
def keys() -> tuple[FileSigner, FileSigner]:
    return (
        FileSigner(rsa.generate_private_key(65537, 2048), name="third-party-a"),
        FileSigner(rsa.generate_private_key(65537, 2048), name="third-party-b"),
    )


@pytest.fixture()
def market(tmp_path: Path) -> Iterator[LiveRegistry]:
    with live_registry(tmp_path / "data") as live:
        yield live


def signed(src: Path, signer: FileSigner, category: str, out: str) -> Path:
    return dify.sign(src, signer, category=category, output=src.with_name(out))


def test_download_sequence_identifier_and_verification(
    market: LiveRegistry, tmp_path: Path, keys: tuple[FileSigner, FileSigner]
) -> None:
    key_a, _key_b = keys
    base = dify_zip(tmp_path / "src", "acme", "weather", "1.2.3.4")  # a four-part Dify version
    pkg = signed(base, key_a, "community", "acme-weather_1.2.3.4.difypkg")
    assert publish(market, pkg).exit_code == 0
    data = pkg.read_bytes()
    ident = f"acme/weather:1.2.3.4@{daemon_checksum(data)}"
    assert IDENTIFIER.fullmatch(ident)
    api = f"{market.url}/dify/api/v1"

    by_path = download_with_size_limit(f"{api}/plugins/acme/weather/1.2.3.4/download")
    by_id = download_with_size_limit(f"{api}/plugins/download?{httpx.QueryParams(unique_identifier=ident)}")
    assert by_path == by_id == data  # the exact bytes published, signature in the ZIP comment
    got = tmp_path / "got.difypkg"
    got.write_bytes(by_path)
    trust = TrustSet([trusted_key_from_public(key_a.public_key(), name="third-party-a")])
    result = dify.verify(got, trust=trust)
    assert result.verified, result
    assert "community" in str(result.signatures[0].claims)
    assert daemon_checksum(by_path) == ident.rsplit("@", 1)[1]

    batch = httpx.post(
        f"{api}/plugins/batch", json={"plugin_ids": ["acme/weather", "acme/none"]}, headers={"X-Dify-Version": "1.9.0"}
    )
    assert batch.status_code == 200
    plugins = batch.json()["data"]["plugins"]
    assert [p["plugin_id"] for p in plugins] == ["acme/weather"]
    decl: dict[str, Any] = plugins[0]
    assert decl["latest_package_identifier"] == ident and decl["latest_version"] == "1.2.3.4"
    assert decl["org"] == "acme" and decl["name"] == "weather" and decl["label"]["en_US"] == "Weather"
    assert decl["status"] == "active" and isinstance(decl["resource"], dict)

    dist = httpx.get(f"{api}/dist/plugins/manifest.json").json()
    assert dist["plugins"] == [
        {
            "org": "acme",
            "name": "weather",
            "latest_version": "1.2.3.4",
            "latest_package_identifier": ident,
            "latest_package_url": f"{api}/plugins/acme/weather/1.2.3.4/download",
        }
    ]
    assert httpx.post(f"{api}/stats/plugins/install_count", json={"unique_identifier": ident}).status_code == 200

    # 404 on both forms, for HEAD and GET alike, as "file not found".
    for url in (
        f"{api}/plugins/acme/weather/9.9.9/download",
        f"{api}/plugins/other/weather/1.2.3.4/download",
        f"{api}/plugins/download?unique_identifier=acme/weather:1.2.3.4@{'0' * 64}",
        f"{api}/plugins/download?unique_identifier=garbage",
    ):
        with pytest.raises(FileNotFound):
            download_with_size_limit(url)
    # The size cap, from the HEAD's Content-Length.
    with pytest.raises(TooLarge):
        download_with_size_limit(f"{api}/plugins/acme/weather/1.2.3.4/download", max_size=len(data) - 1)


def test_identifier_follows_category_not_key(
    market: LiveRegistry, tmp_path: Path, keys: tuple[FileSigner, FileSigner]
) -> None:
    key_a, key_b = keys
    base = dify_zip(tmp_path / "src", "acme", "clock", "0.0.14")
    community_a = signed(base, key_a, "community", "a.difypkg")
    partner_a = signed(base, key_a, "partner", "p.difypkg")
    community_b = signed(base, key_b, "community", "b.difypkg")
    assert publish(market, community_a).exit_code == 0
    served = httpx.post(f"{market.url}/dify/api/v1/plugins/batch", json={"plugin_ids": ["acme/clock"]}).json()
    ident = served["data"]["plugins"][0]["latest_package_identifier"]
    assert ident == f"acme/clock:0.0.14@{daemon_checksum(community_a.read_bytes())}"
    # The verification entry is covered by the checksum, the signature (ZIP comment) is not.
    assert daemon_checksum(partner_a.read_bytes()) != ident.rsplit("@", 1)[1]
    assert daemon_checksum(community_b.read_bytes()) == ident.rsplit("@", 1)[1]
    from signery.registry.hosts import dify_checksum

    assert dify_checksum(partner_a) == daemon_checksum(partner_a.read_bytes())
    assert dify_checksum(community_b) == daemon_checksum(community_b.read_bytes())


def test_large_package_served_whole(market: LiveRegistry, tmp_path: Path, keys: tuple[FileSigner, FileSigner]) -> None:
    base = dify_zip(tmp_path / "src", "acme", "big", "2.0.0", filler=bytes(range(256)) * (6 << 12))  # ~6 MiB
    pkg = signed(base, keys[0], "community", "big.difypkg")
    assert publish(market, pkg).exit_code == 0
    got = download_with_size_limit(f"{market.url}/dify/api/v1/plugins/acme/big/2.0.0/download")
    assert got == pkg.read_bytes()
