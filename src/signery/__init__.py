"""signery: sign software packages, and refuse the ones not signed by someone you trust.

The recipes below cover the common jobs in a few lines::

    import signery

    signer = signery.load_signer("alice.private.pem")
    signed = signery.sign("plugin.zip", signer)                       # -> plugin.signed.zip
    result = signery.verify(signed, trust=signery.load_trust("alice.public.pem"))
    result.raise_for_status()                                         # or look at result.reason

Beyond them, the public API is this package's documented modules: :mod:`signery.keys`, :mod:`signery.trust`,
:mod:`signery.errors`, :mod:`signery.result`, :mod:`signery.archive`, :mod:`signery.digests` and the format
modules under :mod:`signery.formats`. Modules and names starting with ``_`` are internal; ``signery.service`` and
``signery.registry`` are applications (installed with the ``service`` and ``registry`` extras).

Importing ``signery`` is cheap: the recipes import what they need when called, and the re-exported classes
(:class:`Signer`, :class:`TrustSet`, :class:`VerificationResult`, :class:`SigneryError` and the other errors of
:mod:`signery.errors`, :class:`Reason`) are loaded on first use.
"""

from __future__ import annotations

import os

# Not typing.TYPE_CHECKING: importing typing would be most of the cost of `import signery` (mypy knows the name).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from datetime import datetime
    from pathlib import Path
    from typing import Any

    from .errors import *  # noqa: F403 - the names of errors.__all__; mypy re-exports what a star import brings
    from .keys import Signer as Signer
    from .result import VerificationResult as VerificationResult
    from .trust import TrustSet as TrustSet

    StrPath = str | os.PathLike[str]

__version__ = "0.1.0"

REMOTE_PREFIX = "remote:"
"""A :func:`load_signer` reference ``remote:NAME`` names a key held by a signing service."""
PKCS11_PREFIX = "pkcs11:"
"""A :func:`load_signer` reference ``pkcs11:...`` (RFC 7512) names a key in a PKCS#11 token."""

# Re-exported names -> their module, loaded on first use (PEP 562), so that `import signery` imports nothing. The
# errors are the names of signery.errors.__all__, listed there only: learning them imports that module, so they join
# __all__ (and dir()) when it is first asked for.
_LAZY = {"Signer": "signery.keys", "TrustSet": "signery.trust", "VerificationResult": "signery.result"}
_ERRORS = "signery.errors"
_OWN = ("__version__", "load_signer", "load_trust", "sign", "verify")


def __getattr__(name: str) -> Any:
    import importlib

    if name == "__all__":
        value: Any = sorted([*importlib.import_module(_ERRORS).__all__, *_LAZY, *_OWN])
    else:
        module = _LAZY.get(name)
        if module is None and name[:1].isupper() and name in importlib.import_module(_ERRORS).__all__:
            module = _ERRORS
        if module is None:
            raise AttributeError(f"module 'signery' has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY) | set(__getattr__("__all__")))


def sign(
    path: StrPath,
    signer: Signer,
    *,
    format: str | None = None,
    output: StrPath | None = None,
    overwrite: bool = False,
    **options: Any,
) -> Path:
    """Sign ``path`` and return the path written (atomically).

    ``format`` is inferred when not given: an OpenPGP key signs ``openpgp`` (a detached ``X.sig``), a component
    archive ``ocm``, a ``.difypkg`` with an RSA key ``dify`` (a signed ``X.signed.difypkg``), anything else
    ``native`` (a ZIP gets a signed copy ``X.signed.zip``, anything else a detached ``X.signery.json``).
    ``options`` are the format's options (``signery.formats.get_format(NAME).options_type``): for example
    ``claims={"version": "1.2.0"}``, ``in_place=True`` or ``digest="blake3"`` (native), ``category="partner"``
    (dify), ``armor=True`` (openpgp). An existing output is not replaced unless ``overwrite``.

    Raises:
        UsageError: an unknown format, an option that format does not take, or an output that exists.
        MalformedError: ``path`` is not something the format can sign.
    """
    from pathlib import Path

    from .formats import sign as sign_as

    target = Path(output) if output is not None else None
    _, written = sign_as(Path(path), signer, format=format, output=target, options=options, overwrite=overwrite)
    return written


def verify(
    path: StrPath,
    *,
    trust: TrustSet,
    signature: StrPath | None = None,
    threshold: int = 1,
    now: datetime | None = None,
) -> VerificationResult:
    """Verify every signature ``path`` carries, in whatever format, against ``trust``.

    Returns a :class:`VerificationResult`, never a bare bool: ``result.verified`` says whether at least
    ``threshold`` distinct trusted keys signed it, ``result.reason`` (a :class:`Reason`) why not, and
    ``result.raise_for_status()`` raises :class:`VerificationError` with that reason. A package with no signature
    is ``unsigned``. ``signature`` is a detached signature file kept elsewhere than beside ``path``; ``now`` the
    time key expiry is judged at (default: now).

    Raises:
        MalformedError: unusable input.
        UnsafeArchiveError: a dangerous archive (path traversal, a ZIP bomb...).
    """
    from pathlib import Path

    from .formats import verify_all

    return verify_all(
        Path(path),
        trust=trust,
        signature=Path(signature) if signature is not None else None,
        threshold=threshold,
        now=now,
    )


def load_signer(
    ref: StrPath,
    *,
    passphrase: str | bytes | None = None,
    server: str | None = None,
    api_key: str | None = None,
    ca_file: StrPath | None = None,
    env: Mapping[str, str] | None = None,
    pin: str | None = None,
    pkcs11_module: str | None = None,
) -> Signer:
    """The :class:`Signer` that ``ref`` names.

    - a PEM (or DER) private key file: a :class:`signery.keys.FileSigner`;
    - an OpenPGP secret key file (armored or binary, as ``gpg --export-secret-keys`` or ``signery keygen --format
      openpgp`` write it): a :class:`signery.openpgp.OpenPGPSigner`, bound to its certificate, which signs in
      every format;
    - ``remote:NAME``: a :class:`signery.remote.RemoteSigner` for key ``NAME`` of a signing service, which never
      hands out the private key. It takes the settings ``signery sign --key remote:NAME`` takes: ``server`` (the
      service URL), ``api_key`` and ``ca_file`` (PEM CA certificates for an ``https://`` server). The library
      never reads the environment itself; pass ``env=os.environ`` to default them, as the CLI does, to
      ``$SIGNERY_SERVER``, ``$SIGNERY_API_KEY`` and ``$SIGNERY_CA_FILE``. Nothing is sent until the signer is
      first used.

    - ``pkcs11:token=...;object=...`` (an RFC 7512 URI): a :class:`signery.pkcs11.PKCS11Signer` for a key that
      never leaves its token or HSM. The module is the URI's ``module-path``, else ``pkcs11_module``, else
      ``$SIGNERY_PKCS11_MODULE`` in ``env``; the PIN is the URI's ``pin-source``/``pin-value``, else ``pin``.

    ``passphrase`` unlocks an encrypted key file.

    Raises:
        UsageError: an unreadable file, a public key given instead of a private one, a wrong or missing
            passphrase, or a remote reference without a server or API key.
        MalformedError: a file that is no private key.
    """
    from pathlib import Path

    text = os.fspath(ref)
    if isinstance(text, str) and text.startswith(REMOTE_PREFIX):
        return _remote_signer(
            text[len(REMOTE_PREFIX) :], server=server, api_key=api_key, ca_file=ca_file, env=env or {}
        )
    if isinstance(text, str) and text.startswith(PKCS11_PREFIX):
        from .pkcs11 import PKCS11Signer

        module = pkcs11_module or (env or {}).get("SIGNERY_PKCS11_MODULE") or None
        return PKCS11Signer(text, module=module, pin=pin)
    secret = passphrase.encode() if isinstance(passphrase, str) else passphrase
    from .keys import read_key_file

    path = Path(ref)
    data = read_key_file(path)
    head = data.lstrip()
    if head.startswith(b"-----BEGIN PGP ") or (data[:1] != b"" and data[0] & 0x80):  # an OpenPGP packet tag
        from . import openpgp

        return openpgp.load_signer(data, passphrase=secret, source=str(path))
    from .hybrid import load_hybrid_signer
    from .keys import FileSigner, is_hybrid_pem, load_private_key

    if is_hybrid_pem(data):  # an Ed25519 + ML-DSA-65 bundle: one hybrid envelope signed by both halves
        return load_hybrid_signer(data, passphrase=secret, source=str(path))
    return FileSigner(load_private_key(data, passphrase=secret, source=str(path)), name=str(path))


def _remote_signer(
    name: str, *, server: str | None, api_key: str | None, ca_file: StrPath | None, env: Mapping[str, str]
) -> Signer:
    from .errors import UsageError

    server = server or env.get("SIGNERY_SERVER")
    if not server:
        raise UsageError("remote keys need a server URL (server=, or $SIGNERY_SERVER with env=)", subject="server")
    api_key = api_key or env.get("SIGNERY_API_KEY")
    if not api_key:
        raise UsageError("remote keys need an API key (api_key=, or $SIGNERY_API_KEY with env=)", subject="api_key")
    ca = os.fspath(ca_file) if ca_file is not None else env.get("SIGNERY_CA_FILE") or None
    from .remote import RemoteSigner

    return RemoteSigner(server, api_key, name, ca_file=ca)


def load_trust(*sources: StrPath) -> TrustSet:
    """The keys to trust, from public key files and trust store directories, as one :class:`TrustSet`.

    A file is a PEM public key, an X.509 certificate or an OpenPGP certificate (a private key is accepted and
    only its public half kept); a directory is a trust store as ``signery trust add --store DIR`` keeps it (a
    directory with no store in it trusts nothing). The default store, ``$SIGNERY_HOME``, is never read
    implicitly: pass it.

    Raises:
        UsageError: no source, or an unreadable file.
        MalformedError: a file that is no key or certificate.
        ConfigError: a corrupt trust store.
    """
    from pathlib import Path

    from .errors import UsageError
    from .trust import TrustSet, TrustStore, load_trusted_key_file

    if not sources:
        raise UsageError("load_trust needs at least one key file or trust store directory")
    trust = TrustSet()
    for source in sources:
        path = Path(source)
        if path.is_dir():
            trust = trust.union(TrustStore(path).load())
        else:
            trust = trust.union(TrustSet([load_trusted_key_file(path).key]))
    return trust
