"""What every fuzz target shares: the accelerator build to load, scratch files, fixed keys, and the oracle.

The rule the targets enforce: for any input, a parser either succeeds or raises :class:`signery.errors.SigneryError`.
Any other exception escapes the target and atheris reports it as a crash (with the input saved). Disagreements
between two readers that must agree (the C accelerator and the pure-Python reference, a fast path and the slow
path it stands for) are raised as :class:`Disagreement`, which escapes the same way.

Nothing from ``signery`` is imported here at module level: a target imports ``signery`` inside
``atheris.instrument_imports()`` so that its code is instrumented for coverage, which only works for modules
imported there for the first time.
"""

from __future__ import annotations

import atexit
import hashlib
import importlib.util
import os
import random
import shutil
import sys
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

FASTZIP_ENV = "SIGNERY_FUZZ_FASTZIP"  # path of a _fastzip build to load instead of the installed one
FUZZ_DIR = Path(__file__).resolve().parent
ROOT = FUZZ_DIR.parent

# Fixed times: seeds are signed at SIGNED_AT and verified at NOW, so every run judges an input the same way.
SIGNED_AT = datetime(2025, 1, 1, tzinfo=UTC)
NOW = datetime(2026, 1, 1, tzinfo=UTC)

T = TypeVar("T")


class Disagreement(AssertionError):
    """Two readers that must agree did not: a bug, reported as a crash."""


def use_accelerator_from_env() -> str | None:
    """Load the ``_fastzip`` build named by ``$SIGNERY_FUZZ_FASTZIP`` as ``signery._fastzip``.

    Must run before anything imports ``signery.archive``. Returns the path loaded (``None``: the installed build).
    """
    path = os.environ.get(FASTZIP_ENV)
    if not path:
        return None
    if "signery.archive" in sys.modules:
        raise RuntimeError(f"{FASTZIP_ENV} is set but signery.archive was imported first")
    spec = importlib.util.spec_from_file_location("signery._fastzip", path)
    if spec is None or spec.loader is None:
        raise RuntimeError(f"{FASTZIP_ENV}={path}: not a loadable extension module")
    module = importlib.util.module_from_spec(spec)
    sys.modules["signery._fastzip"] = module
    spec.loader.exec_module(module)
    return path


def scratch() -> Path:
    """A private directory for the files a target writes (in RAM when /dev/shm is there); removed at exit."""
    base = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None  # noqa: S108 - a private mkdtemp below it
    path = Path(tempfile.mkdtemp(prefix="signery-fuzz-", dir=base))
    atexit.register(shutil.rmtree, path, True)
    return path


def refused(fn: Callable[..., T], *args: Any, **kwargs: Any) -> tuple[T | None, BaseException | None]:
    """``(result, None)``, or ``(None, error)`` when ``fn`` refused the input with a ``SigneryError``.

    Any other exception propagates: that is the bug the fuzzers look for.
    """
    from signery.errors import SigneryError

    try:
        return fn(*args, **kwargs), None
    except SigneryError as exc:
        return None, exc


def same_error(a: BaseException | None, b: BaseException | None) -> bool:
    return type(a) is type(b) and str(a) == str(b)


# -- fixed keys ------------------------------------------------------------------------------------------------
# Derived from constant seeds, so that make_corpus.py writes the same seeds every time and the targets trust the
# keys that signed them. They protect nothing: never use them outside these fuzzers.


def ed25519_key() -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"signery fuzz ed25519 key").digest())


def ed25519_subkey() -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"signery fuzz ed25519 subkey").digest())


def _probable_prime(rng: random.Random, bits: int) -> int:
    small = [p for p in range(3, 2000, 2) if all(p % d for d in range(3, int(p**0.5) + 1, 2))]
    while True:
        n = rng.getrandbits(bits) | (1 << (bits - 1)) | (1 << (bits - 2)) | 1
        if any(n % p == 0 for p in small) or n % 65537 == 1:
            continue
        d, s = n - 1, 0
        while d % 2 == 0:
            d, s = d // 2, s + 1
        for _ in range(40):
            x = pow(rng.randrange(2, n - 1), d, n)
            if x in (1, n - 1):
                continue
            for _ in range(s - 1):
                x = pow(x, 2, n)
                if x == n - 1:
                    break
            else:
                break
        else:
            return n


def x509_chain() -> tuple[Any, Any]:
    """``(leaf, root)``: a code-signing certificate for :func:`ed25519_key` under a fixed root CA (both Ed25519)."""
    from cryptography import x509
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    root_key = ed25519.Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"signery fuzz root CA").digest())
    root_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "signery fuzz root CA")])
    leaf_name = x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, "acme.org"), x509.NameAttribute(NameOID.ORGANIZATION_NAME, "ACME")]
    )
    start, end = datetime(2024, 1, 1, tzinfo=UTC), datetime(2035, 1, 1, tzinfo=UTC)

    def usage(*, cert_sign: bool) -> x509.KeyUsage:
        return x509.KeyUsage(
            digital_signature=not cert_sign,
            content_commitment=False,
            key_encipherment=False,
            data_encipherment=False,
            key_agreement=False,
            key_cert_sign=cert_sign,
            crl_sign=cert_sign,
            encipher_only=False,
            decipher_only=False,
        )

    root = (
        x509.CertificateBuilder()
        .subject_name(root_name)
        .issuer_name(root_name)
        .public_key(root_key.public_key())
        .serial_number(1)
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=1), critical=True)
        .add_extension(usage(cert_sign=True), critical=True)
        .sign(root_key, None)
    )
    leaf = (
        x509.CertificateBuilder()
        .subject_name(leaf_name)
        .issuer_name(root_name)
        .public_key(ed25519_key().public_key())
        .serial_number(2)
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(usage(cert_sign=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False)
        .sign(root_key, None)
    )
    return leaf, root


_RSA: rsa.RSAPrivateKey | None = None


def rsa_key() -> rsa.RSAPrivateKey:
    """An RSA-2048 key generated from a fixed seed (cryptography cannot generate deterministically)."""
    global _RSA
    if _RSA is None:
        rng = random.Random(b"signery fuzz rsa-2048 key")  # noqa: S311 - a deterministic test key, on purpose
        e = 65537
        p = _probable_prime(rng, 1024)
        q = _probable_prime(rng, 1024)
        p, q = max(p, q), min(p, q)
        d = pow(e, -1, (p - 1) * (q - 1))
        public = rsa.RSAPublicNumbers(e, p * q)
        numbers = rsa.RSAPrivateNumbers(
            p, q, d, rsa.rsa_crt_dmp1(d, p), rsa.rsa_crt_dmq1(d, q), rsa.rsa_crt_iqmp(p, q), public
        )
        _RSA = numbers.private_key()
    return _RSA


# -- fixed inputs beside the fuzzed one ------------------------------------------------------------------------

MESSAGE = b"signery fuzz: the file the OpenPGP and native seeds sign\n"  # the subject of detached signatures
OCM_BLOB_REFERENCE = "sha256.blob"
OCM_BLOB = b"the local blob of the fuzzed component descriptor\n"
OCM_CHILD = b"""meta:
  schemaVersion: v2
component:
  name: acme.org/child
  version: 1.0.0
  provider: acme.org
  repositoryContexts: []
  sources: []
  componentReferences: []
  resources: []
"""


class MemoryComponentVersion:
    """An OCM component version held in memory: one descriptor and one local blob (``OCM_BLOB_REFERENCE``)."""

    def __init__(self, descriptor: Any, location: str = "memory") -> None:
        self.descriptor = descriptor
        self.location = location
        self.saved: bytes | None = None

    def open_blob(self, reference: str) -> Any:
        from signery.errors import MalformedError

        if reference.replace(":", ".", 1) != OCM_BLOB_REFERENCE:
            raise MalformedError(f"local blob {reference} is missing from the archive", subject=reference)
        return iter([OCM_BLOB])

    def save(self) -> None:
        self.saved = self.descriptor.dump()


class MemoryRepository:
    """A repository holding only ``acme.org/child:1.0.0`` (``OCM_CHILD``), for references to resolve."""

    def __init__(self) -> None:
        from signery.ocm.descriptor import parse_descriptor

        self.child = MemoryComponentVersion(parse_descriptor(OCM_CHILD, source="child"), location="child")

    def lookup(self, name: str, version: str) -> MemoryComponentVersion | None:
        return self.child if (name, version) == ("acme.org/child", "1.0.0") else None


def fuzz(test_one_input: Callable[[bytes], None]) -> None:
    """Hand ``test_one_input`` to atheris with this process's arguments (libFuzzer flags, corpus dirs or files)."""
    import atheris

    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
