"""The Raspberry Pi digest file: byte-identical to rpi-eeprom-digest's output, checked with openssl dgst as its -v
mode does, the verdicts, and hostile files.

Debian has no rpi-eeprom package, so the script's documented behaviour (raspberrypi/rpi-eeprom
``rpi-eeprom-digest``: ``writeSig`` and ``verifySig``) is replayed here with the same tools it uses: sha256sum,
date/SOURCE_DATE_EPOCH, ``openssl dgst -sign``, ``xxd -c 4096 -p`` and, to verify, ``grep rsa2048 | cut -f 2 -d ' '``,
``xxd -r -p`` and ``openssl dgst -verify``.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import given, settings
from hypothesis import strategies as st

from signery.errors import MalformedError, Reason, UsageError
from signery.formats import get_format, rpi_eeprom
from signery.keys import FileSigner, private_key_pem
from signery.trust import TrustSet, trusted_key_from_public
from support import require_tool

TS = 1767225600

# What writeSig does, step by step (our own replay; see the module docstring).
WRITE_SIG = r"""
set -e
sha256sum "$IMAGE" | awk '{print $1}' > "$OUTPUT"
if [ -n "${SOURCE_DATE_EPOCH}" ]; then
    echo "ts: ${SOURCE_DATE_EPOCH}" >> "$OUTPUT"
else
    echo "ts: $(date -u +%s)" >> "$OUTPUT"
fi
openssl dgst -sign "$KEY" -keyform PEM -sha256 -out "$TMP/tmp.sig" "$IMAGE"
echo "rsa2048: $(xxd -c 4096 -p < "$TMP/tmp.sig")" >> "$OUTPUT"
"""
# ... and what verifySig (-v) does.
VERIFY_SIG = r"""
set -e
sig_hex="$(grep rsa2048 "$SIG" | cut -f 2 -d ' ')"
[ -n "$sig_hex" ] || { echo "No RSA signature in $SIG" >&2; exit 1; }
echo ${sig_hex} | xxd -c 4096 -p -r > "$TMP/sig.bin"
openssl dgst -verify "$KEY" -signature "$TMP/sig.bin" "$IMAGE"
"""


@pytest.fixture(scope="module")
def key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(65537, 2048)


@pytest.fixture()
def image(tmp_path: Path) -> Path:
    p = tmp_path / "pieeprom.bin"
    p.write_bytes(bytes(range(256)) * 2048)
    return p


def _sh(script: str, tmp_path: Path, **env: str | Path) -> subprocess.CompletedProcess[str]:
    for tool in ("sha256sum", "openssl", "xxd", "awk"):
        require_tool(tool)
    scratch = tmp_path / "scratch"
    scratch.mkdir(exist_ok=True)
    full = {"PATH": "/usr/bin:/bin", "TMP": str(scratch), **{k: str(v) for k, v in env.items()}}
    return subprocess.run(["sh", "-c", script], capture_output=True, text=True, env=full, check=False, timeout=60)


def _pem(tmp_path: Path, key: rsa.RSAPrivateKey) -> tuple[Path, Path]:
    priv, pub = tmp_path / "private.pem", tmp_path / "public.pem"
    priv.write_bytes(private_key_pem(key))
    pub.write_bytes(
        key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return priv, pub


def _trust(*keys: rsa.RSAPrivateKey) -> TrustSet:
    return TrustSet(trusted_key_from_public(k.public_key(), name=f"k{i}") for i, k in enumerate(keys))


def test_signery_writes_exactly_what_rpi_eeprom_digest_writes(
    tmp_path: Path, key: rsa.RSAPrivateKey, image: Path
) -> None:
    fmt = get_format("rpi-eeprom")
    assert fmt is rpi_eeprom.FORMAT
    out = fmt.sign(image, FileSigner(key), options=fmt.options(timestamp=TS))
    assert out == tmp_path / "pieeprom.sig"
    priv, _ = _pem(tmp_path, key)
    ref = tmp_path / "ref.sig"
    proc = _sh(WRITE_SIG, tmp_path, IMAGE=image, OUTPUT=ref, KEY=priv, SOURCE_DATE_EPOCH=str(TS))
    assert proc.returncode == 0, proc.stderr
    assert out.read_bytes() == ref.read_bytes()
    text = out.read_text()
    assert re.fullmatch(r"[0-9a-f]{64}\nts: 1767225600\nrsa2048: [0-9a-f]{512}\n", text)
    assert text.split("\n")[0] == hashlib.sha256(image.read_bytes()).hexdigest()


def test_the_rsa2048_field_verifies_with_openssl_dgst(tmp_path: Path, key: rsa.RSAPrivateKey, image: Path) -> None:
    out = rpi_eeprom.FORMAT.sign(image, FileSigner(key), options=rpi_eeprom.FORMAT.options(timestamp=TS))
    _, pub = _pem(tmp_path, key)
    sig_bin = tmp_path / "sig.bin"
    sig_bin.write_bytes(bytes.fromhex(out.read_text().split("rsa2048: ")[1].strip()))
    openssl = require_tool("openssl")
    proc = subprocess.run(
        [openssl, "dgst", "-sha256", "-verify", pub, "-signature", sig_bin, image],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0 and "Verified OK" in proc.stdout, proc.stdout + proc.stderr
    # rpi-eeprom-digest -k public.pem -i pieeprom.bin -v pieeprom.sig, replayed:
    proc = _sh(VERIFY_SIG, tmp_path, IMAGE=image, SIG=out, KEY=pub)
    assert proc.returncode == 0 and "Verified OK" in proc.stdout, proc.stdout + proc.stderr
    image.write_bytes(image.read_bytes() + b"x")
    assert _sh(VERIFY_SIG, tmp_path, IMAGE=image, SIG=out, KEY=pub).returncode != 0


def test_signery_verifies_what_the_script_writes(tmp_path: Path, key: rsa.RSAPrivateKey, image: Path) -> None:
    priv, _ = _pem(tmp_path, key)
    sig = tmp_path / "pieeprom.sig"
    assert _sh(WRITE_SIG, tmp_path, IMAGE=image, OUTPUT=sig, KEY=priv, SOURCE_DATE_EPOCH="42").returncode == 0
    result = rpi_eeprom.FORMAT.verify(image, trust=_trust(key))
    assert result.verified, result.message
    assert result.signatures[0].claims["ts"] == 42
    assert rpi_eeprom.FORMAT.detect(image) and rpi_eeprom.FORMAT.may_carry(image)
    assert rpi_eeprom.FORMAT.inspect(image)["ts"] == 42


def test_verdicts(tmp_path: Path, key: rsa.RSAPrivateKey, image: Path) -> None:
    fmt = rpi_eeprom.FORMAT
    assert fmt.verify(image, trust=_trust(key)).reason is Reason.UNSIGNED
    out = fmt.sign(image, FileSigner(key), options=fmt.options(timestamp=TS))
    other = rsa.generate_private_key(65537, 2048)
    assert fmt.verify(image, trust=_trust(other)).reason is Reason.UNKNOWN_KEY
    # The ts line is not signed: changing it keeps the signature valid (as on the device).
    out.write_text(out.read_text().replace(f"ts: {TS}", "ts: 1"))
    assert fmt.verify(image, trust=_trust(key)).verified
    # A digest-only file (rpi-eeprom-update's integrity check): unsigned when it matches, tampered when not.
    out.write_text(hashlib.sha256(image.read_bytes()).hexdigest() + "\nts: 5\n")
    assert fmt.verify(image, trust=_trust(key)).reason is Reason.UNSIGNED
    image.write_bytes(b"changed")
    assert fmt.verify(image, trust=_trust(key)).reason is Reason.TAMPERED
    # Signed, then the image changes: the digest line no longer matches.
    fmt.sign(image, FileSigner(key), options=fmt.options(timestamp=TS))
    image.write_bytes(b"changed again")
    assert fmt.verify(image, trust=_trust(key)).reason is Reason.TAMPERED
    # The digest line rewritten to match, the signature no longer does.
    text = out.read_text().split("\n")
    text[0] = hashlib.sha256(b"changed again").hexdigest()
    out.write_text("\n".join(text))
    assert fmt.verify(image, trust=_trust(key)).reason is Reason.TAMPERED


def test_names_and_keys(tmp_path: Path, key: rsa.RSAPrivateKey) -> None:
    boot = tmp_path / "boot.img"
    boot.write_bytes(b"ramdisk")
    fmt = rpi_eeprom.FORMAT
    assert fmt.default_output(boot, fmt.options()) == tmp_path / "boot.sig"
    noext = tmp_path / "payload"
    noext.write_bytes(b"x")
    assert fmt.sign(noext, FileSigner(key)) == tmp_path / "payload.sig"
    # balena's sign-rsa default, IMAGE.sig, is found too.
    (tmp_path / "payload.sig").rename(tmp_path / "payload.bin.sig")
    (tmp_path / "payload").rename(tmp_path / "payload.bin")
    assert fmt.verify(tmp_path / "payload.bin", trust=_trust(key)).verified
    with pytest.raises(UsageError, match="RSA-2048"):
        fmt.sign(boot, FileSigner(rsa.generate_private_key(65537, 3072)))
    with pytest.raises(UsageError):
        fmt.options(timestamp=-1)
    with pytest.raises(UsageError):
        fmt.options(timestamp="soon")
    assert fmt.options(timestamp="42").timestamp == 42
    sig_subject = tmp_path / "x.sig"
    sig_subject.write_bytes(b"y")
    with pytest.raises(UsageError):
        fmt.sign(sig_subject, FileSigner(key))


@pytest.mark.parametrize(
    "text",
    [
        "",
        "abc\n",
        "0" * 64,  # no newline
        "0" * 64 + "\nts: x\n",
        "0" * 64 + "\nts: 1\nrsa2048: 00\n",
        "0" * 64 + "\nrsa2048: " + "00" * 256 + "\nts: 1\n",  # out of order
        "0" * 64 + "\nts: 1\n\n",
        "0" * 64 + "\r\nts: 1\n",
        "0" * 64 + "\nts: 01\n",
    ],
)
def test_malformed_digest_files(text: str) -> None:
    with pytest.raises(MalformedError):
        rpi_eeprom.parse(text.encode())


def test_parse_and_render_round_trip() -> None:
    digest, sig = hashlib.sha256(b"a").digest(), bytes(range(256))
    data = rpi_eeprom.render(digest, 7, sig)
    assert rpi_eeprom.parse(data) == rpi_eeprom.DigestFile(digest, 7, sig)
    assert rpi_eeprom.parse(rpi_eeprom.render(digest, 7)) == rpi_eeprom.DigestFile(digest, 7, None)


@settings(max_examples=300, deadline=2000)
@given(
    data=st.one_of(st.binary(max_size=700), st.text(alphabet="0123456789abcdef:tsr \n", max_size=700).map(str.encode))
)
def test_hostile_digest_files_are_malformed_or_parsed(data: bytes) -> None:
    try:
        parsed = rpi_eeprom.parse(data)
    except MalformedError:
        return
    assert rpi_eeprom.render(parsed.digest, parsed.timestamp or 0, parsed.signature).startswith(data[:65].lower())
