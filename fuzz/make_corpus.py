"""Regenerate the committed seed corpora under fuzz/corpus/<target>/ (small, valid inputs, byte for byte reproducible).

    .venv/bin/python fuzz/make_corpus.py            # rewrites fuzz/corpus/*/ (each directory is emptied first)
    .venv/bin/python fuzz/make_corpus.py --check    # exit 1 if the committed seeds differ from what it would write

Everything is built from fixed content, fixed times (``_harness.SIGNED_AT``) and the fixed test keys of
``_harness`` (Ed25519 and RSA signatures are deterministic), with signery's own writers where it has them (native,
Dify, OpenPGP and OCM signing), so the seeds are exactly what signery produces and the targets trust the signers.
The deflate streams depend on zlib's version, so a different zlib may write different (equally valid) bytes.
"""

from __future__ import annotations

import argparse
import base64
import gzip
import hashlib
import io
import json
import shutil
import stat
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import _harness

CORPUS = _harness.FUZZ_DIR / "corpus"
DATE = (2025, 1, 1, 0, 0, 0)
MTIME = int(_harness.SIGNED_AT.timestamp())


# -- zip -----------------------------------------------------------------------------------------------------------


class _Unseekable(io.RawIOBase):
    """A write-only stream without tell/seek: zipfile then writes data descriptors, as streaming zippers do."""

    def __init__(self) -> None:
        self.buf = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, b: bytes) -> int:  # type: ignore[override]
        self.buf += b
        return len(b)


def _zip(entries: list[tuple[str, bytes]], *, method: int = zipfile.ZIP_DEFLATED, comment: bytes = b"") -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in entries:
            info = zipfile.ZipInfo(name, DATE)
            is_dir = name.endswith("/")
            info.external_attr = ((stat.S_IFDIR | 0o755) if is_dir else (stat.S_IFREG | 0o644)) << 16
            info.compress_type = zipfile.ZIP_STORED if is_dir else method
            z.writestr(info, data)
        z.comment = comment
    return buf.getvalue()


def _streamed_zip(entries: list[tuple[str, bytes]]) -> bytes:
    out = _Unseekable()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in entries:
            info = zipfile.ZipInfo(name, DATE)
            info.external_attr = (stat.S_IFREG | 0o644) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            with z.open(info, "w") as fh:
                fh.write(data)
    return bytes(out.buf)


PLUGIN_FILES = [
    ("main.py", b"def handler(event):\n    return {'ok': True, 'event': event}\n"),
    ("lib/", b""),
    ("lib/util.py", b"ANSWER = 42\n" * 8),
    ("README.md", b"# hello plugin\n\nA plugin that says hello.\n"),
]
DIFY_MANIFEST = (
    b"version: 0.0.1\ntype: plugin\nauthor: acme\nname: hello\nlabel:\n  en_US: Hello\n"
    b"created_at: 2025-01-01T00:00:00Z\nresource:\n  memory: 268435456\nplugins:\n  tools:\n    - provider/hello.yaml\n"
    b"meta:\n  version: 0.0.1\n  arch: [amd64, arm64]\n  runner:\n    language: python\n    version: '3.12'\n"
)
MATTERMOST_MANIFEST = json.dumps(
    {"id": "com.acme.hello", "name": "Hello", "version": "1.2.3", "server": {"executable": "server/dist/plugin"}},
    indent=1,
).encode()


def zip_seeds(tmp: Path) -> dict[str, bytes]:
    from signery.formats import dify, native
    from signery.keys import FileSigner

    seeds = {
        "plain.zip": _zip(PLUGIN_FILES),
        "stored.zip": _zip(PLUGIN_FILES, method=zipfile.ZIP_STORED),
        "streamed-descriptors.zip": _streamed_zip([(n, d) for n, d in PLUGIN_FILES if not n.endswith("/")]),
        "unicode-names.zip": _zip([("café/", b""), ("café/naïve.txt", "déjà vu\n".encode()), ("日本.txt", b"x\n")]),
        "comment.zip": _zip([("a.txt", b"a\n")], comment=b"built by make_corpus.py"),
        "empty.zip": _zip([]),
        "mattermost-plugin.zip": _zip([("plugin.json", MATTERMOST_MANIFEST), ("server/dist/plugin", b"\x7fELF")]),
    }
    # A native package: signery's own signature entry, signed by the Ed25519 key the target trusts.
    unsigned = tmp / "plugin.zip"
    unsigned.write_bytes(seeds["plain.zip"])
    signer = FileSigner(_harness.ed25519_key(), name="fuzz-ed25519")
    signed = native.sign(unsigned, signer, output=tmp / "plugin.signed.zip", now=_harness.SIGNED_AT, claims={"n": "1"})
    seeds["native-signed.zip"] = signed.read_bytes()
    # A Dify package: the signature in the archive comment, RSA (PKCS#1 v1.5) by the RSA key the target trusts.
    difypkg = tmp / "hello.difypkg"
    difypkg.write_bytes(_zip([("manifest.yaml", DIFY_MANIFEST), ("main.py", PLUGIN_FILES[0][1])]))
    rsa_signer = FileSigner(_harness.rsa_key(), name="fuzz-rsa")
    out = dify.sign(
        difypkg, rsa_signer, output=tmp / "hello.signed.difypkg", category="partner", now=_harness.SIGNED_AT
    )
    seeds["dify-signed.difypkg"] = out.read_bytes()
    return seeds


# -- tar -----------------------------------------------------------------------------------------------------------


def _tar(members: list[tuple[str, bytes | None, int]], *, fmt: int = tarfile.GNU_FORMAT) -> bytes:
    """``(name, content or None for a directory, mode)`` as a tar with fixed owners and times."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tf:
        for name, data, mode in members:
            info = tarfile.TarInfo(name)
            info.mtime, info.mode, info.uid, info.gid, info.uname, info.gname = MTIME, mode, 0, 0, "", ""
            if data is None:
                info.type = tarfile.DIRTYPE
                tf.addfile(info)
            else:
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
        end = tf.offset
    # tarfile pads to a 10 KiB record; two zero blocks end an archive, the rest only slows the fuzzer down.
    return buf.getvalue()[: end + 1024]


def _gz(data: bytes) -> bytes:
    return gzip.compress(data, compresslevel=9, mtime=0)


BUNDLE = [
    ("com.acme.hello/", None, 0o755),
    ("com.acme.hello/plugin.json", MATTERMOST_MANIFEST, 0o644),
    ("com.acme.hello/server/", None, 0o755),
    ("com.acme.hello/server/dist/", None, 0o755),
    ("com.acme.hello/server/dist/plugin-linux-amd64", b"\x7fELF\x02\x01\x01" + b"\x00" * 9, 0o755),
    ("com.acme.hello/webapp/dist/main.js", b"console.log('hello');\n", 0o644),
    ("com.acme.hello/assets/icon.svg", b'<svg xmlns="http://www.w3.org/2000/svg"/>\n', 0o644),
]


def tar_seeds() -> dict[str, bytes]:
    long_dir = "com.acme.hello/" + "deeply/nested/" * 8
    return {
        "mattermost-bundle.tar.gz": _gz(_tar(BUNDLE)),
        "flat-ustar.tar.gz": _gz(
            _tar([("plugin.json", MATTERMOST_MANIFEST, 0o644), ("./server/", None, 0o755)], fmt=tarfile.USTAR_FORMAT)
        ),
        "pax-unicode.tar.gz": _gz(
            _tar(
                [("plugin.json", MATTERMOST_MANIFEST, 0o644), ("café/naïve.txt", b"x\n", 0o644)], fmt=tarfile.PAX_FORMAT
            )
        ),
        # Uncompressed: the target gzips inputs that lack the gzip magic, so mutations reach the tar headers.
        "gnu-longname.tar": _tar([("plugin.json", MATTERMOST_MANIFEST, 0o644), (long_dir + "file.txt", b"y\n", 0o644)]),
        "pax.tar": _tar([("a/", None, 0o755), ("a/b.txt", b"b\n", 0o600)], fmt=tarfile.PAX_FORMAT),
        "empty.tar.gz": _gz(_tar([])),
    }


# -- OpenPGP -------------------------------------------------------------------------------------------------------
# Written here from RFC 4880 / RFC 9580 (v4 keys and signatures) rather than through signery's writer: the seeds do
# not change when signery's internals move, and signery must read what an independent writer writes.

ED25519_OID = bytes.fromhex("2b06010401da470f01")  # EdDSA legacy over Ed25519, as gpg writes it
PK_RSA, PK_EDDSA = 1, 22
HASH_IDS = {"sha256": 8, "sha512": 10}


def _packet(tag: int, body: bytes) -> bytes:
    n = len(body)
    if n < 192:
        head = bytes([n])
    elif n < 8384:
        head = bytes([((n - 192) >> 8) + 192, (n - 192) & 0xFF])
    else:
        head = b"\xff" + n.to_bytes(4, "big")
    return bytes([0xC0 | tag]) + head + body


def _mpi(value: int | bytes) -> bytes:
    n = int.from_bytes(value, "big") if isinstance(value, bytes) else value
    return n.bit_length().to_bytes(2, "big") + n.to_bytes((n.bit_length() + 7) // 8, "big")


def _subpacket(kind: int, data: bytes) -> bytes:
    assert len(data) + 1 < 192
    return bytes([len(data) + 1, kind]) + data


def _crc24(data: bytes) -> int:
    crc = 0xB704CE
    for byte in data:
        crc ^= byte << 16
        for _ in range(8):
            crc <<= 1
            if crc & 0x1000000:
                crc ^= 0x1864CFB
    return crc & 0xFFFFFF


def _armor(data: bytes, kind: str) -> bytes:
    b64 = base64.b64encode(data).decode()
    lines = [b64[i : i + 64] for i in range(0, len(b64), 64)]
    crc = base64.b64encode(_crc24(data).to_bytes(3, "big")).decode()
    return "\n".join([f"-----BEGIN PGP {kind}-----", "", *lines, f"={crc}", f"-----END PGP {kind}-----", ""]).encode()


class _Key:
    """A v4 OpenPGP key over a cryptography private key (Ed25519 as EdDSA legacy, or RSA)."""

    def __init__(self, private: Any, created: int) -> None:
        self.private = private
        public = private.public_key()
        if hasattr(public, "public_numbers"):
            numbers = public.public_numbers()
            self.algorithm, material = PK_RSA, _mpi(numbers.n) + _mpi(numbers.e)
        else:
            raw = public.public_bytes_raw()
            self.algorithm = PK_EDDSA
            material = bytes([len(ED25519_OID)]) + ED25519_OID + _mpi(b"\x40" + raw)
        self.body = b"\x04" + created.to_bytes(4, "big") + bytes([self.algorithm]) + material
        self.prefix = b"\x99" + len(self.body).to_bytes(2, "big") + self.body
        self.fingerprint = hashlib.sha1(self.prefix, usedforsecurity=False).digest()

    def secret(self) -> bytes:
        """The secret-key packet body: public part, then the unprotected secret MPIs and their checksum."""
        if self.algorithm == PK_RSA:
            n = self.private.private_numbers()
            p, q = sorted((n.p, n.q))
            plain = _mpi(n.d) + _mpi(p) + _mpi(q) + _mpi(pow(p, -1, q))
        else:
            from cryptography.hazmat.primitives import serialization

            seed = self.private.private_bytes(
                serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
            )
            plain = _mpi(seed)
        return self.body + b"\x00" + plain + (sum(plain) & 0xFFFF).to_bytes(2, "big")

    def sign(self, sig_type: int, signed: bytes, *, hashed: bytes = b"", hash_name: str = "sha256") -> bytes:
        """A framed v4 signature packet over ``signed`` (the data, or the key/user-ID prefixes it binds)."""
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding, utils

        area = _subpacket(2, MTIME.to_bytes(4, "big")) + hashed + _subpacket(33, b"\x04" + self.fingerprint)
        head = bytes([4, sig_type, self.algorithm, HASH_IDS[hash_name]]) + len(area).to_bytes(2, "big") + area
        digest = hashlib.new(hash_name, signed + head + b"\x04\xff" + len(head).to_bytes(4, "big")).digest()
        if self.algorithm == PK_RSA:
            algorithm = hashes.SHA256() if hash_name == "sha256" else hashes.SHA512()
            value = _mpi(self.private.sign(digest, padding.PKCS1v15(), utils.Prehashed(algorithm)))
        else:
            rs = self.private.sign(digest)
            value = _mpi(rs[:32]) + _mpi(rs[32:])
        unhashed = _subpacket(16, self.fingerprint[-8:])
        return _packet(2, head + len(unhashed).to_bytes(2, "big") + unhashed + digest[:2] + value)


def _uid(text: str) -> tuple[bytes, bytes]:
    """(the user-ID packet, what a certification over it hashes after the key)."""
    raw = text.encode()
    return _packet(13, raw), b"\xb4" + len(raw).to_bytes(4, "big") + raw


def openpgp_seeds() -> dict[str, bytes]:
    primary = _Key(_harness.ed25519_key(), MTIME)
    sub = _Key(_harness.ed25519_subkey(), MTIME)
    uid_packet, uid_hashed = _uid("Fuzz Signer <fuzz@example.org>")
    certify_only = _subpacket(27, b"\x01") + _subpacket(25, b"\x01")
    selfsig = primary.sign(0x13, primary.prefix + uid_hashed, hashed=certify_only, hash_name="sha512")
    binding_data = primary.prefix + sub.prefix
    back = sub.sign(0x19, binding_data)
    assert back[1] < 192  # a one-octet length: the packet body (the embedded signature) starts at byte 2
    back_body = back[2:]
    binding = primary.sign(0x18, binding_data, hashed=_subpacket(27, b"\x02") + _subpacket(32, back_body))
    public = _packet(6, primary.body) + uid_packet + selfsig + _packet(14, sub.body) + binding
    secret = _packet(5, primary.secret()) + uid_packet + selfsig + _packet(7, sub.secret()) + binding
    signature = sub.sign(0x00, _harness.MESSAGE)

    rsa = _Key(_harness.rsa_key(), MTIME)
    rsa_uid, rsa_uid_hashed = _uid("Fuzz RSA <rsa@example.org>")
    rsa_self = rsa.sign(0x13, rsa.prefix + rsa_uid_hashed, hashed=_subpacket(27, b"\x03") + _subpacket(25, b"\x01"))
    rsa_cert = _packet(6, rsa.body) + rsa_uid + rsa_self
    rsa_sig = rsa.sign(0x00, _harness.MESSAGE, hash_name="sha512")
    return {
        "cert-ed25519-subkey.asc": _armor(public, "PUBLIC KEY BLOCK"),
        "cert-ed25519-subkey.pgp": public,
        "secret-ed25519.asc": _armor(secret, "PRIVATE KEY BLOCK"),
        "signature-ed25519.asc": _armor(signature, "SIGNATURE"),
        "signature-ed25519.sig": signature,
        "cert-rsa.pgp": rsa_cert,
        "secret-rsa.pgp": _packet(5, rsa.secret()) + rsa_uid + rsa_self,
        "signature-rsa.asc": _armor(rsa_sig, "SIGNATURE"),
        "signatures-two.sig": signature + rsa_sig,
    }


# -- native signature documents -------------------------------------------------------------------------------------


def native_seeds(tmp: Path, signed_zip: bytes) -> dict[str, bytes]:
    from signery.archive import ZipArchive
    from signery.formats import native
    from signery.keys import FileSigner

    subject = tmp / "subject.txt"
    subject.write_bytes(_harness.MESSAGE)
    ed = FileSigner(_harness.ed25519_key(), name="fuzz-ed25519")
    # RSA signs native envelopes with PSS, which is randomised: the countersigner is a second Ed25519 key.
    other = FileSigner(_harness.ed25519_subkey(), name="fuzz-ed25519-2")
    one = native.sign(subject, ed, now=_harness.SIGNED_AT, claims={"name": "hello", "version": "1.0.0"}).read_bytes()
    two = native.sign(subject, other, now=_harness.SIGNED_AT).read_bytes()  # a countersignature beside the first
    package = tmp / "package.signed.zip"
    package.write_bytes(signed_zip)
    with ZipArchive.open(package) as z:
        entry = z.get(native.RESERVED_ENTRY)
        assert entry is not None
        in_zip = z.read(entry)
    document = native.SignatureDocument.from_bytes(in_zip, source="seed")
    payload = document.envelopes[0].payload
    statement = json.loads(payload)
    return {
        "file-signature.signery.json": one,
        "countersigned.signery.json": two,
        "zip-signatures.json": in_zip,
        # Raw statements: the target also reads every input as a DSSE payload.
        "statement-canonical.json": payload,
        "statement-pretty.json": json.dumps(statement, indent=2).encode(),
    }


# -- OCM component descriptors ------------------------------------------------------------------------------------


DESCRIPTOR_V2 = f"""meta:
  schemaVersion: v2
component:
  name: acme.org/hello
  version: 1.0.0
  provider:
    name: acme.org
    labels:
      - name: city
        value: Karlsruhe
  creationTime: "2025-01-01T00:00:00Z"
  labels:
    - name: release
      value: stable
      signing: true
  repositoryContexts:
    - baseUrl: ghcr.io
      componentNameMapping: urlPath
      type: OCIRegistry
  sources:
    - name: src
      version: 1.0.0
      type: git
      access:
        type: gitHub
        repoUrl: github.com/acme/hello
        commit: 0123456789abcdef0123456789abcdef01234567
  componentReferences:
    - name: child
      componentName: acme.org/child
      version: 1.0.0
      extraIdentity:
        os: linux
  resources:
    - name: blob
      version: 1.0.0
      type: plainText
      relation: local
      access:
        type: localBlob
        localReference: {_harness.OCM_BLOB_REFERENCE}
        mediaType: text/plain
    - name: image
      version: 1.0.0
      type: ociImage
      relation: external
      extraIdentity:
        arch: amd64
      access:
        type: ociArtifact
        imageReference: ghcr.io/acme/hello:1.0.0
      digest:
        hashAlgorithm: SHA-256
        normalisationAlgorithm: ociArtifactDigest/v1
        value: {"ab" * 32}
    - name: nothing
      version: 1.0.0
      type: plainText
      relation: local
      access:
        type: none
""".encode()

DESCRIPTOR_V3 = b"""apiVersion: ocm.software/v3alpha1
kind: ComponentVersion
metadata:
  name: acme.org/hello
  version: 1.0.0
  provider:
    name: acme.org
  creationTime: "2025-01-01T00:00:00Z"
repositoryContexts: []
spec:
  resources:
    - name: blob
      version: 1.0.0
      type: plainText
      relation: local
      access:
        type: localBlob
        localReference: sha256.blob
  sources: []
  references:
    - name: child
      componentName: acme.org/child
      version: 1.0.0
"""


def ocm_seeds() -> dict[str, bytes]:
    from cryptography.hazmat.primitives import serialization

    from signery.keys import FileSigner
    from signery.ocm import signing
    from signery.ocm.archive import Repositories
    from signery.ocm.descriptor import parse_descriptor

    def signed(text: bytes, sign: Callable[[_harness.MemoryComponentVersion, Repositories], None]) -> bytes:
        cv = _harness.MemoryComponentVersion(parse_descriptor(text, source="seed"))
        sign(cv, Repositories(_harness.MemoryRepository()))
        assert cv.saved is not None
        return cv.saved

    ed = FileSigner(_harness.ed25519_key(), name="fuzz-ed25519")
    rsa = FileSigner(_harness.rsa_key(), name="fuzz-rsa")
    leaf, _root = _harness.x509_chain()

    def rsa_and_ed(cv: _harness.MemoryComponentVersion, repo: Repositories) -> None:
        signing.sign_component_version(cv, rsa, name="acme-rsa", repository=repo)
        signing.sign_component_version(
            cv,
            ed,
            name="acme-ed25519",
            repository=repo,
            algorithm=signing.ED25519,
            normalisation="jsonNormalisation/v2",
        )

    def sha512_v1(cv: _harness.MemoryComponentVersion, repo: Repositories) -> None:
        # PKCS#1 v1.5, not PSS: PSS signatures are randomised, and the seeds must be reproducible.
        signing.sign_component_version(
            cv, rsa, name="acme", repository=repo, normalisation="jsonNormalisation/v1", hash_alg="sha512"
        )

    def pem(cv: _harness.MemoryComponentVersion, repo: Repositories) -> None:
        signing.sign_component_version(
            cv, ed, name="acme-x509", repository=repo, algorithm=signing.ED25519, certificates=[leaf]
        )

    v2_signed = signed(DESCRIPTOR_V2, rsa_and_ed)
    as_json = json.dumps(parse_descriptor(v2_signed, source="seed").raw, indent=1).encode()
    assert leaf.public_bytes(serialization.Encoding.PEM)
    return {
        "v2-unsigned.yaml": DESCRIPTOR_V2,
        "v2-signed-rsa-ed25519.yaml": v2_signed,
        "v2-signed-rsa-sha512-v1.yaml": signed(DESCRIPTOR_V2, sha512_v1),
        "v2-signed-x509-chain.yaml": signed(DESCRIPTOR_V2, pem),
        "v2-signed.json": as_json,
        "v3alpha1-signed.yaml": signed(DESCRIPTOR_V3, rsa_and_ed),
        "child.yaml": _harness.OCM_CHILD,
    }


# -- writing -------------------------------------------------------------------------------------------------------


def build() -> dict[str, dict[str, bytes]]:
    with tempfile.TemporaryDirectory(prefix="signery-corpus-") as d:
        tmp = Path(d)
        zips = zip_seeds(tmp)
        return {
            "zip": zips,
            "tar": tar_seeds(),
            "openpgp": openpgp_seeds(),
            "native_document": native_seeds(tmp, zips["native-signed.zip"]),
            "ocm_descriptor": ocm_seeds(),
        }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="compare with the committed seeds instead of writing")
    args = parser.parse_args()
    corpora = build()
    if args.check:
        stale = []
        for target, seeds in corpora.items():
            have = {p.name: p.read_bytes() for p in (CORPUS / target).glob("*")} if (CORPUS / target).is_dir() else {}
            if have != seeds:
                stale.append(target)
        for target in stale:
            print(f"fuzz/corpus/{target} differs from what make_corpus.py writes")
        return 1 if stale else 0
    total = 0
    for target, seeds in corpora.items():
        out = CORPUS / target
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        for name, data in sorted(seeds.items()):
            (out / name).write_bytes(data)
        size = sum(len(d) for d in seeds.values())
        total += size
        print(f"fuzz/corpus/{target}: {len(seeds)} seeds, {size} bytes")
    print(f"total {total} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
