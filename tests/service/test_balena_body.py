"""balenaSign's large bodies streamed to spool files (``service/balena_body.py``): the bytes and digests that land
on disk, whatever the chunking, and every malformed base64 refused as it was before the decoder went to OpenSSL."""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from signery.errors import MalformedError
from signery.service import balena_body
from signery.service.balena_body import CODEC, SpooledBody, encode_file, spool


async def _chunks(body: bytes, size: int) -> AsyncIterator[bytes]:
    for i in range(0, len(body), size):
        yield body[i : i + size]


def _spool(tmp_path: Path, body: bytes, size: int = 65536, hashes: tuple[str, ...] = ("sha256",)) -> SpooledBody:
    return asyncio.run(
        spool(_chunks(body, size), large={"payload"}, directory=tmp_path, limit=1 << 30, hash_names=hashes)
    )


@pytest.fixture(autouse=True)
def small_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(balena_body, "SINK_BLOCK", 4096)  # many blocks, queued and drained in worker threads


@pytest.mark.parametrize("size", [1, 3, 7, 1000, 4096, 65536])
@pytest.mark.parametrize("length", [0, 1, 2, 3, 4095, 100_000])
def test_payload_lands_whole(tmp_path: Path, size: int, length: int) -> None:
    data = os.urandom(length)
    body = b'{"key_id": "k", "payload": "' + base64.b64encode(data) + b'", "x": [1, {"a": "b"}]}'
    got = _spool(tmp_path, body, size, ("sha256", "sha512"))
    f = got.files["payload"]
    assert f.path.read_bytes() == data and f.size == length
    assert f.digests == {"sha256": hashlib.sha256(data).digest(), "sha512": hashlib.sha512(data).digest()}
    assert got.fields == {"key_id": "k", "payload": "", "x": [1, {"a": "b"}]}
    got.cleanup()
    assert list(tmp_path.iterdir()) == []


def test_json_escapes_in_base64(tmp_path: Path) -> None:
    data = bytes(range(256)) * 50
    text = base64.b64encode(data).replace(b"/", b"\\/").replace(b"A", b"\\u0041")
    got = _spool(tmp_path, b'{"payload":"' + text + b'"}', size=5)
    assert got.files["payload"].path.read_bytes() == data


@pytest.mark.parametrize(
    "text",
    [
        b"QUJD\nREVG",  # a newline inside
        b" QUJDREVG",  # a leading blank
        b"QUJDREVG ",  # a trailing blank
        b"QUJDREV ",  # a trailing blank in the last quartet
        b"QUJD    ",  # a blank quartet
        b"QUJDREV",  # not a multiple of 4
        b"QU=DREVG",  # padding inside
        b"QQ==QUJD",  # data after the padding
        b"QUJD-EVG",  # URL-safe alphabet
        b"QUJD\\u00e9EVG",  # a character outside ASCII
        b"Q===",
    ],
)
@pytest.mark.parametrize("size", [1, 3, 65536])
def test_malformed_base64_is_refused(tmp_path: Path, text: bytes, size: int) -> None:
    with pytest.raises(MalformedError):
        _spool(tmp_path, b'{"payload":"' + text + b'"}', size)
    assert list(tmp_path.iterdir()) == []  # nothing left behind


def test_padding_then_more_across_blocks(tmp_path: Path) -> None:
    first = base64.b64encode(b"x" * 3070 + b"y")  # ends in "=" (3071 bytes), 4096 characters: one block
    assert first.endswith(b"=") and len(first) == 4096
    with pytest.raises(MalformedError, match=r"after its padding|not standard base64"):
        _spool(tmp_path, b'{"payload":"' + first + b"QUJD" * 2000 + b'"}')
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("length", [0, 1, 2, 3, 1000, 3 << 12])
def test_codec_matches_binascii(length: int) -> None:
    data = os.urandom(length)
    text = base64.b64encode(data)
    out = bytearray(len(text) // 4 * 3)
    assert bytes(out[: CODEC.decode(bytearray(text), out)]) == data
    enc = bytearray(len(text) + 1)
    assert bytes(enc[: CODEC.encode(memoryview(bytearray(data)), enc)]) == binascii.b2a_base64(data, newline=False)


def test_encode_file_in_pieces(tmp_path: Path) -> None:
    data = os.urandom(100_001)
    (tmp_path / "f").write_bytes(data)
    pieces = [bytes(p) for p in encode_file(tmp_path / "f", block=3 * 1000)]
    assert len(pieces) == 34 and b"".join(pieces) == base64.b64encode(data)
