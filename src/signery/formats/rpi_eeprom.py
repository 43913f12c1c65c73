"""The Raspberry Pi bootloader's digest file (``pieeprom.sig``, ``boot.sig``), as ``rpi-eeprom-digest`` writes it.

Three text lines, each ending in ``\\n`` (raspberrypi/rpi-eeprom ``rpi-eeprom-digest`` ``writeSig``)::

    <SHA-256 of the image, 64 lowercase hex digits>          (sha256sum | awk '{print $1}')
    ts: <unix seconds>                                       (date -u +%s, or $SOURCE_DATE_EPOCH)
    rsa2048: <hex of the signature, one line>                (openssl dgst -sign KEY -sha256 IMAGE | xxd -c 4096 -p)

The signature is RSA-2048 PKCS#1 v1.5 with SHA-256 and a DigestInfo over the image itself (not over the text):
the bootloader supports only RSA-2048 and SHA-256. The ``ts:`` line is *not* signed. A file without the
``rsa2048:`` line is a bare integrity digest (what ``rpi-eeprom-update`` writes for unsigned updates): it verifies
as ``unsigned`` when the digest matches and as ``tampered`` when it does not.

The digest file sits beside the image with the image's suffix replaced (``pieeprom.bin`` -> ``pieeprom.sig``,
``boot.img`` -> ``boot.sig``), the names the bootloader and ``rpi-eeprom-update`` look for; ``IMAGE.sig`` is
found too (balena's ``sign-rsa`` default).

Example::

    FORMAT.sign(Path("boot.img"), FileSigner(rsa2048_key), options=FORMAT.options(timestamp=1700000000))
    FORMAT.verify(Path("boot.img"), trust=trust)                      # reads boot.sig
"""

from __future__ import annotations

__all__ = [
    "FORMAT",
    "DigestFile",
    "RpiEepromFormat",
    "RpiEepromOptions",
    "parse",
    "recover_sha256",
    "render",
    "sign",
    "sign_digest",
    "verify",
]

import hmac
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa

from .._fs import atomic_write_bytes
from ..errors import EnvironmentFailure, MalformedError, Reason, UsageError, VerificationError
from ..keys import Signer, short_id, verify_signature
from ..result import SignatureCheck, VerificationResult
from ._base import Options, SignatureFileFormat, SignRequest, VerifyRequest, beside
from ._common import read_head, read_signature_file
from .rawrsa import file_digest, judge_rsa, recover_digest_raw

NAME = "rpi-eeprom"
SUFFIX = ".sig"
RSA_BITS = 2048
SIG_BYTES = RSA_BITS // 8
MAX_FILE_BYTES = 4096  # three short lines: 65 + ~16 + 522 bytes
_SHA256_DIGEST_INFO = bytes.fromhex("3031300d060960864801650304020105000420")
_HASH_RE = re.compile(r"[0-9a-fA-F]{64}")
_TS_RE = re.compile(r"ts: (0|[1-9][0-9]{0,18})")
_SIG_RE = re.compile(rf"rsa2048: ([0-9a-fA-F]{{{2 * SIG_BYTES}}})")


@dataclass(frozen=True)
class DigestFile:
    """A parsed digest file: the image's SHA-256, the (unsigned) timestamp, and the signature if any."""

    digest: bytes
    timestamp: int | None
    signature: bytes | None


def render(digest: bytes, timestamp: int, signature: bytes | None = None) -> bytes:
    """The digest file's bytes, exactly as ``rpi-eeprom-digest`` writes them."""
    if len(digest) != 32:
        raise UsageError(f"a SHA-256 digest is 32 bytes, got {len(digest)}")
    if not 0 <= timestamp < 10**19:
        raise UsageError(f"timestamp {timestamp} is not unix seconds")
    text = f"{digest.hex()}\nts: {timestamp}\n"
    if signature is not None:
        if len(signature) != SIG_BYTES:
            raise UsageError(f"an rsa2048 signature is {SIG_BYTES} bytes, got {len(signature)}")
        text += f"rsa2048: {signature.hex()}\n"
    return text.encode("ascii")


def parse(data: bytes, *, source: str = "digest file") -> DigestFile:
    """Parse a digest file strictly: the hash line, then optional ``ts:`` and ``rsa2048:`` lines, in that order."""
    if len(data) > MAX_FILE_BYTES:
        raise MalformedError(f"{source} is too large to be a Raspberry Pi digest file", subject=source)
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        raise MalformedError(f"{source} is not a Raspberry Pi digest file (not ASCII text)", subject=source) from None
    if not text.endswith("\n"):
        raise MalformedError(f"{source}: the last line has no newline", subject=source)
    lines = text[:-1].split("\n")
    if not _HASH_RE.fullmatch(lines[0]):
        raise MalformedError(f"{source}: the first line is not a SHA-256 in hex", subject=source)
    digest = bytes.fromhex(lines[0])
    rest = lines[1:]
    timestamp: int | None = None
    signature: bytes | None = None
    if rest and (m := _TS_RE.fullmatch(rest[0])):
        timestamp = int(m.group(1))
        rest = rest[1:]
    if rest and (m := _SIG_RE.fullmatch(rest[0])):
        signature = bytes.fromhex(m.group(1))
        rest = rest[1:]
    if rest:
        shown = rest[0][:40]
        raise MalformedError(
            f"{source}: unexpected line {shown!r} (expected 'ts: N' then 'rsa2048: HEX')", subject=source
        )
    return DigestFile(digest, timestamp, signature)


def recover_sha256(public: rsa.RSAPublicKey, signature: bytes) -> bytes | None:
    """The SHA-256 a PKCS#1 v1.5 DigestInfo signature by ``public`` carries (``None``: not this key's)."""
    info = recover_digest_raw(public, signature)
    if info is None or len(info) != len(_SHA256_DIGEST_INFO) + 32 or not info.startswith(_SHA256_DIGEST_INFO):
        return None
    return info[len(_SHA256_DIGEST_INFO) :]


def sign_digest(digest: bytes, signer: Signer, *, timestamp: int) -> bytes:
    """The digest file for an image whose SHA-256 is ``digest``: what balenaSign's ``/rsa/sign`` answers."""
    public = signer.public_key()
    if not isinstance(public, rsa.RSAPublicKey) or public.key_size != RSA_BITS:
        raise UsageError(
            f"the Raspberry Pi bootloader checks RSA-2048 signatures only; key {short_id(signer.key_id)} is not one",
            subject=signer.key_id,
        )
    signature = signer.sign_digest(digest, hash_name="sha256", rsa_padding="pkcs1v15")
    try:
        verify_signature(public, signature, digest, hash_name="sha256", rsa_padding="pkcs1v15", prehashed=True)
    except VerificationError:
        raise EnvironmentFailure(
            f"key {short_id(signer.key_id)} returned a signature that does not verify", subject=signer.key_id
        ) from None
    return render(digest, timestamp, signature)


def _candidates(subject: Path) -> list[Path]:
    own = subject.with_suffix(SUFFIX) if subject.suffix else beside(subject, SUFFIX)
    return list(dict.fromkeys([own, beside(subject, SUFFIX)]))


def _find(subject: Path, signature: Path | None) -> Path | None:
    if signature is not None:
        return Path(signature)
    return next((c for c in _candidates(subject) if c.is_file() and c != subject), None)


def _sign(subject: Path, signer: Signer, request: SignRequest) -> Path:
    """Write the signed digest file of ``subject`` (default: its suffix replaced by ``.sig``).

    The ``ts:`` line is the ``timestamp`` option (unix seconds or an aware datetime); without it, ``now``, else the
    time now.
    """
    public = signer.public_key()
    if not isinstance(public, rsa.RSAPublicKey) or public.key_size != RSA_BITS:
        raise UsageError("the Raspberry Pi bootloader checks RSA-2048 signatures only; give an RSA-2048 key")
    timestamp = request.options.timestamp
    ts = _unix(timestamp if timestamp is not None else request.now)
    data = sign_digest(file_digest(subject, request.progress), signer, timestamp=ts)
    out = request.target(_candidates(subject)[0])
    if out.resolve() == subject.resolve():
        raise UsageError(f"the digest file would replace {subject}; give --output", subject=str(subject))
    atomic_write_bytes(out, data, mode=0o644)
    return out


def _unix(timestamp: int | datetime | None) -> int:
    if timestamp is None:
        return int(datetime.now(UTC).timestamp())
    if isinstance(timestamp, datetime):
        if timestamp.tzinfo is None:
            raise UsageError("give the timestamp with a time zone (UTC)")
        return int(timestamp.timestamp())
    if isinstance(timestamp, bool) or not isinstance(timestamp, int) or timestamp < 0:
        raise UsageError(f"timestamp {timestamp!r} is not unix seconds")
    return timestamp


def _verify(subject: Path, request: VerifyRequest) -> VerificationResult:
    """Check the digest line against the image and the ``rsa2048`` signature against the trusted RSA-2048 keys."""
    path = _find(subject, request.signature)
    if path is None:
        return request.unsigned(subject)
    parsed = parse(read_signature_file(path, MAX_FILE_BYTES, what="digest file"), source=str(path))
    actual = file_digest(subject, request.progress)
    claims: dict[str, Any] = {"digest": parsed.digest.hex(), "ts": parsed.timestamp, "ts_signed": False}
    if not hmac.compare_digest(actual, parsed.digest):
        detail = f"{subject} does not match the SHA-256 recorded in {path.name}"
        return request.result(
            subject, SignatureCheck(NAME, None, Reason.TAMPERED, detail=detail, subject=str(subject), claims=claims)
        )
    if parsed.signature is None:
        return request.result(subject)
    check = judge_rsa(
        NAME,
        str(subject),
        parsed.signature,
        actual,
        request.trust,
        recover=recover_sha256,
        now=request.now,
        claims=claims,
    )
    return request.result(subject, check)


def _detect(path: Path) -> bool:
    """Whether the digest file ``path`` starts with a SHA-256 hex line."""
    head = read_head(path, 65) or b""
    return len(head) == 65 and head[64:] == b"\n" and _HASH_RE.fullmatch(head[:64].decode("latin-1")) is not None


def _inspect(subject: Path, path: Path) -> dict[str, Any]:
    parsed = parse(read_signature_file(path, MAX_FILE_BYTES, what="digest file"), source=str(path))
    claims = {"algorithm": "rsa-2048", "hash": "sha256", "ts": parsed.timestamp, "ts_signed": False}
    sigs = [{"format": NAME, "key_id": None, "claims": claims}] if parsed.signature is not None else []
    return FORMAT.inspected(subject, sigs, signature=path, digest=parsed.digest.hex(), ts=parsed.timestamp)


@dataclass(frozen=True)
class RpiEepromOptions(Options):
    """Signing options of the Raspberry Pi digest file.

    Attributes:
        timestamp: the ``ts:`` line, unix seconds or an aware datetime (default: now). It is not signed.
    """

    timestamp: int | datetime | str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.timestamp, str):  # from the command line: unix seconds
            if not self.timestamp.isdigit():
                raise UsageError(f"timestamp {self.timestamp!r} is not unix seconds", subject="--timestamp")
            object.__setattr__(self, "timestamp", int(self.timestamp))
        if isinstance(self.timestamp, int | datetime):
            _unix(self.timestamp)


class RpiEepromFormat(SignatureFileFormat):
    """The Raspberry Pi ``rsa-eeprom-digest`` file: SHA-256, ``ts:``, and an RSA-2048 signature of the image."""

    name = NAME
    summary = "a Raspberry Pi digest file X.sig (sha256, ts, rsa2048), as rpi-eeprom-digest writes it"
    options_type = RpiEepromOptions

    def signature_file(self, subject: Path, signature: Path | None) -> Path | None:
        """``signature`` when given, else the digest file beside ``subject``."""
        return _find(subject, signature)

    def may_carry(self, subject: Path) -> bool:
        return any(c.is_file() and c != Path(subject) for c in _candidates(Path(subject)))

    def default_output(self, subject: Path, options: Options) -> Path:
        return _candidates(Path(subject))[0]


FORMAT = RpiEepromFormat(_sign, _verify, _detect, _inspect)
sign, verify, detect, inspect = FORMAT.sign_kw, FORMAT.verify, FORMAT.detect, FORMAT.inspect
