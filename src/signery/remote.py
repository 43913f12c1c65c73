"""Signing with a key held by the signery signing service: only digests and small statements travel.

:class:`RemoteSigner` is a :class:`~signery.keys.Signer` for the service's plain keys. :class:`RemoteOpenPGPSigner`
is the same for its OpenPGP keys, bound to the certificate the service publishes (an
:class:`~signery.openpgp.OpenPGPSigner`, which is a :class:`~signery.keys.Signer` too; the packet is built
locally). Both pin the key version, so every signature of one run comes from the same key, and check each
signature against the key's public half before returning it: a wrong or lying server cannot slip a bad signature in.

Example::

    signer = RemoteSigner("https://sign.example.org", api_key, "release", ca_file="internal-ca.pem")
    signature = signer.sign(statement_bytes)
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from ._internal import http as _http
from .errors import ConfigError, EnvironmentFailure, MalformedError, Reason, SigneryError, UsageError, VerificationError
from .keys import (
    HashName,
    PublicKey,
    RsaPadding,
    Signer,
    _PublicHalf,
    default_hash,
    load_public_key,
    verify_signature,
)
from .openpgp import OpenPGPSigner

MAX_MESSAGE_BYTES = 64 * 1024  # what the service accepts; hash anything bigger locally and sign the digest
MAX_RESPONSE_BYTES = 4 << 20  # a key listing or a signature is small; bound what a hostile server can send us
MAX_RETRIES = 5  # on 429 Retry-After and on 503, then give up
MAX_RETRY_WAIT = 30.0  # seconds; a server asking for longer is treated as down
TIMEOUT = httpx.Timeout(30.0, connect=10.0)
_PGP_TYPES = ("openpgp-rsa-3072", "openpgp-ed25519")
_DIGEST_HASHES: dict[int, HashName] = {32: "sha256", 48: "sha384", 64: "sha512"}


@dataclass(frozen=True)
class RemoteKeyVersion:
    name: str
    type: str
    version: int
    key_id: str
    algorithm: str
    public_key_pem: str
    certificate: str | None
    openpgp_certificate: str | None


tls_context = _http.tls_context  # where it was defined before signery._internal.http


def _service_error(failure: _http.HttpFailure) -> SigneryError:
    """The signing service's HTTP errors, with what to do about them."""
    subject = failure.what
    text = f"signing service refused {subject}: HTTP {failure.status}" + (
        f": {failure.message}" if failure.message else ""
    )
    code = failure.status
    if code == 401:
        return ConfigError(text, subject=subject, hint="check SIGNERY_API_KEY")
    if code == 403:
        return ConfigError(text, subject=subject, hint="the API key lacks the scope for this key")
    if code == 404:
        return UsageError(text, reason=Reason.UNKNOWN_KEY, subject=subject)
    if code in (400, 409, 413, 422):
        return UsageError(text, subject=subject)
    return EnvironmentFailure(text, subject=subject)


class ServiceClient:
    """A small keep-alive HTTP client for the service's JSON API, mapping failures to signery errors.

    Built on :class:`signery._internal.http.HttpClient`: answers are bounded (:data:`MAX_RESPONSE_BYTES`), 429
    and 503 are retried as ``Retry-After`` asks (up to :data:`MAX_RETRIES` times, :data:`MAX_RETRY_WAIT` seconds).

    ``ca_file``: PEM CA certificates to trust for an ``https://`` server instead of the system's (a private CA).
    """

    def __init__(
        self,
        server: str,
        api_key: str | None,
        *,
        transport: httpx.BaseTransport | None = None,
        ca_file: str | Path | None = None,
    ) -> None:
        if not server.startswith(("http://", "https://")):
            raise UsageError(f"server {server!r} must be an http:// or https:// URL", subject=server)
        headers = {"User-Agent": "signery"}
        if api_key:
            headers["X-API-Key"] = api_key
        self._http = _http.HttpClient(
            server,
            headers=headers,
            ca_file=ca_file,
            timeout=TIMEOUT,
            max_response_bytes=MAX_RESPONSE_BYTES,
            service="signing service",
            errors=_service_error,
            retry_statuses=(429, 503),
            max_retries=MAX_RETRIES,
            max_retry_wait=MAX_RETRY_WAIT,
            transport=transport,
        )
        self.server = self._http.display_url

    def __repr__(self) -> str:  # never show the API key
        return f"ServiceClient({self.server!r})"

    def close(self) -> None:
        self._http.close()

    def request(self, method: str, path: str, *, json: Any = None, subject: str | None = None) -> Any:
        """The JSON answer of the service (``None`` for 204); failures as signery errors naming ``subject``."""
        what = subject or path
        with self._http.stream(method, path, json=json, what=what) as response:
            try:
                body = self._http.read_json(response, what=what)
            except MalformedError as exc:  # not JSON, or JSON no parser should accept
                raise EnvironmentFailure(f"signing service sent no JSON for {what}", subject=what) from exc
        if body is None:
            raise EnvironmentFailure(f"signing service sent no JSON for {what}", subject=what)
        return body


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(value: object, *, subject: str) -> bytes:
    if not isinstance(value, str):
        raise EnvironmentFailure(f"signing service sent no signature for {subject}", subject=subject)
    try:
        return base64.b64decode(value, validate=True)
    except ValueError:
        raise EnvironmentFailure(f"signing service sent a malformed signature for {subject}", subject=subject) from None


def _check_returned(verify: Callable[[], None], what: str, *, name: str) -> None:
    """Run ``verify`` over what the service returned: a value that does not verify with key ``name`` is its failure."""
    try:
        verify()
    except (VerificationError, UsageError) as exc:
        raise EnvironmentFailure(
            f"signing service returned {what} that does not verify with {name}", subject=name
        ) from exc


def fetch_key(client: ServiceClient, name: str, *, version: int | None = None) -> RemoteKeyVersion:
    """The public half of ``name`` at ``version`` (default: the newest)."""
    info = client.request("GET", f"/v1/keys/{_path_name(name)}", subject=name)
    try:
        wanted = version if version is not None else int(info["latest_version"])
        for v in info["versions"]:
            if int(v["version"]) == wanted:
                return RemoteKeyVersion(
                    name=str(info["name"]),
                    type=str(info["type"]),
                    version=wanted,
                    key_id=str(v["key_id"]),
                    algorithm=str(v["algorithm"]),
                    public_key_pem=str(v["public_key"]),
                    certificate=v.get("certificate"),
                    openpgp_certificate=v.get("openpgp_certificate"),
                )
    except (KeyError, TypeError, ValueError) as exc:
        raise EnvironmentFailure(f"signing service sent a malformed key description for {name}", subject=name) from exc
    raise UsageError(f"key {name} has no version {wanted}", reason=Reason.UNKNOWN_KEY, subject=name)


def list_keys(client: ServiceClient) -> list[dict[str, Any]]:
    body = client.request("GET", "/v1/keys", subject="keys")
    keys = body.get("keys") if isinstance(body, dict) else None
    if not isinstance(keys, list):
        raise EnvironmentFailure("signing service sent a malformed key list", subject=client.server)
    return keys


def _path_name(name: str) -> str:
    from ._internal.names import check_name  # the one definition of a valid name, shared with the service

    return check_name(name)


class RemoteSigner:
    """A :class:`~signery.keys.Signer` whose private key stays in the signing service."""

    def __init__(
        self,
        server: str,
        api_key: str,
        name: str,
        *,
        version: int | None = None,
        transport: httpx.BaseTransport | None = None,
        ca_file: str | Path | None = None,
    ) -> None:
        self.name = _path_name(name)
        self._client = ServiceClient(server, api_key, transport=transport, ca_file=ca_file)
        self._connect = (server, api_key, transport, ca_file)
        self._version = version
        self._fetched: RemoteKeyVersion | None = None
        self._key: RemoteKeyVersion | None = None
        self._public: PublicKey | None = None
        self._openpgp: RemoteOpenPGPSigner | None = None

    def __repr__(self) -> str:
        return f"RemoteSigner({self._client.server!r}, {self.name!r}, version={self._version!r})"

    def close(self) -> None:
        self._client.close()
        if self._openpgp is not None:
            self._openpgp.close()

    def _description(self) -> RemoteKeyVersion:
        if self._fetched is None:
            self._fetched = fetch_key(self._client, self.name, version=self._version)
        return self._fetched

    def openpgp_signer(self) -> Signer | None:
        """This key bound to the OpenPGP certificate the service publishes, or ``None`` for a non-OpenPGP key.

        The OpenPGP format asks for it (:func:`signery.openpgp.bind_signer`), so ``remote:NAME`` signs OpenPGP
        with no more said than for any other format.
        """
        if not self._description().type.startswith("openpgp-"):
            return None
        if self._openpgp is None:
            server, api_key, transport, ca_file = self._connect
            self._openpgp = RemoteOpenPGPSigner(
                server, api_key, self.name, version=self._version, transport=transport, ca_file=ca_file
            )
        return self._openpgp

    def _pinned(self) -> tuple[RemoteKeyVersion, PublicKey]:
        if self._key is None or self._public is None:
            key = self._description()
            if key.type.startswith("openpgp-"):
                raise UsageError(f"{self.name} is an OpenPGP key; sign OpenPGP signatures with it", subject=self.name)
            self._public = load_public_key(key.public_key_pem.encode(), source=f"remote key {self.name}")
            self._key = key
        return self._key, self._public

    @property
    def key_id(self) -> str:
        return self._pinned()[0].key_id

    @property
    def version(self) -> int:
        return self._pinned()[0].version

    def public_key(self) -> PublicKey:
        return self._pinned()[1]

    def sign(self, message: bytes, *, hash_name: HashName | None = None, rsa_padding: RsaPadding = "pss") -> bytes:
        if len(message) > MAX_MESSAGE_BYTES:
            raise UsageError(
                f"remote signing takes messages up to {MAX_MESSAGE_BYTES} bytes; sign a digest instead",
                subject=self.name,
            )
        _, public = self._pinned()
        h = hash_name or default_hash(public)
        signature = self._call({"message": _b64(message), "hash_algorithm": h, "signature_algorithm": rsa_padding})
        self._check(lambda: verify_signature(public, signature, message, hash_name=h, rsa_padding=rsa_padding))
        return signature

    def sign_digest(self, digest: bytes, *, hash_name: HashName, rsa_padding: RsaPadding = "pss") -> bytes:
        key, public = self._pinned()
        if key.algorithm == "ed25519":
            raise UsageError("Ed25519 signs whole messages, not digests; use an RSA or ECDSA key for this format")
        body = {"digest": _b64(digest), "hash_algorithm": hash_name, "signature_algorithm": rsa_padding}
        signature = self._call(body)
        self._check(
            lambda: verify_signature(
                public, signature, digest, hash_name=hash_name, rsa_padding=rsa_padding, prehashed=True
            )
        )
        return signature

    def _call(self, body: dict[str, Any]) -> bytes:
        key, _ = self._pinned()
        body["version"] = key.version
        reply = self._client.request("POST", f"/v1/keys/{self.name}/sign", json=body, subject=self.name)
        if not isinstance(reply, dict) or reply.get("key_id") != key.key_id:
            raise EnvironmentFailure(f"signing service signed with another key than {key.key_id}", subject=self.name)
        return _unb64(reply.get("signature"), subject=self.name)

    def _check(self, verify: Callable[[], None]) -> None:
        _check_returned(verify, "a signature", name=self.name)


class _OpenPGPServiceKey(_PublicHalf):
    """A :class:`~signery.keys.Signer` over a service OpenPGP key: it makes the raw values OpenPGP signs with.

    The service signs those only (``POST /v1/keys/NAME/openpgp-sign``): RSA PKCS#1 v1.5 over a digest, Ed25519
    over digest-sized messages. Anything else is a usage error; every value is checked before it is returned.
    """

    def __init__(self, client: ServiceClient, key: RemoteKeyVersion, public: PublicKey) -> None:
        super().__init__(public)
        self._client, self._key = client, key
        self.name = key.name

    def __repr__(self) -> str:
        return f"RemoteOpenPGPKey({self._client.server!r}, {self.name!r}, version={self._key.version})"

    def sign(self, message: bytes, *, hash_name: HashName | None = None, rsa_padding: RsaPadding = "pss") -> bytes:
        if self._key.algorithm != "ed25519":
            h = hash_name or default_hash(self._public)
            return self.sign_digest(hashlib.new(h, message).digest(), hash_name=h, rsa_padding=rsa_padding)
        if len(message) not in _DIGEST_HASHES:
            raise UsageError(f"{self.name} is an OpenPGP key: it signs OpenPGP hashes only", subject=self.name)
        value = self._call(message, _DIGEST_HASHES[len(message)])
        self._check(lambda: verify_signature(self._public, value, message))
        return value

    def sign_digest(self, digest: bytes, *, hash_name: HashName, rsa_padding: RsaPadding = "pss") -> bytes:
        if self._key.algorithm == "ed25519":
            raise UsageError("Ed25519 signs whole messages, not digests; use an RSA or ECDSA key for this format")
        if rsa_padding != "pkcs1v15":
            raise UsageError(f"{self.name} is an OpenPGP key: it signs with RSA PKCS#1 v1.5 only", subject=self.name)
        value = self._call(digest, hash_name)
        self._check(
            lambda: verify_signature(
                self._public, value, digest, hash_name=hash_name, rsa_padding="pkcs1v15", prehashed=True
            )
        )
        return value

    def _call(self, digest: bytes, hash_algorithm: str) -> bytes:
        body = {"digest": _b64(digest), "hash_algorithm": hash_algorithm, "version": self._key.version}
        reply = self._client.request("POST", f"/v1/keys/{self.name}/openpgp-sign", json=body, subject=self.name)
        if not isinstance(reply, dict) or reply.get("fingerprint") != self._key.key_id:
            raise EnvironmentFailure(
                f"signing service signed with another key than {self._key.key_id}", subject=self.name
            )
        return _unb64(reply.get("signature"), subject=self.name)

    def _check(self, verify: Callable[[], None]) -> None:
        _check_returned(verify, "an OpenPGP signature", name=self.name)


class RemoteOpenPGPSigner(OpenPGPSigner):
    """An OpenPGP key held by the service, bound to the certificate the service publishes for it.

    The key version is pinned when constructed. Its :attr:`fingerprint` must be the one the service names.
    """

    def __init__(
        self,
        server: str,
        api_key: str,
        name: str,
        *,
        version: int | None = None,
        transport: httpx.BaseTransport | None = None,
        ca_file: str | Path | None = None,
    ) -> None:
        self.name = _path_name(name)
        self._client = ServiceClient(server, api_key, transport=transport, ca_file=ca_file)
        key = fetch_key(self._client, self.name, version=version)
        if key.type not in _PGP_TYPES:
            raise UsageError(f"{self.name} is not an OpenPGP key (it is {key.type})", subject=self.name)
        if not key.openpgp_certificate:
            raise EnvironmentFailure(f"signing service sent no OpenPGP certificate for {self.name}", subject=self.name)
        public = load_public_key(key.public_key_pem.encode(), source=f"remote key {self.name}")
        super().__init__(
            _OpenPGPServiceKey(self._client, key, public),
            certificate=key.openpgp_certificate,
            source=f"the certificate of remote key {self.name}",
        )
        if self.fingerprint != key.key_id:
            raise EnvironmentFailure(
                f"signing service's certificate for {self.name} names {self.fingerprint}, not {key.key_id}",
                subject=self.name,
            )
        self.version = key.version
        self.openpgp_certificate = key.openpgp_certificate

    def __repr__(self) -> str:
        return f"RemoteOpenPGPSigner({self._client.server!r}, {self.name!r}, fingerprint={self.fingerprint!r})"

    def close(self) -> None:
        self._client.close()


def remote_public_key(
    server: str, name: str, *, version: int | None = None, ca_file: str | Path | None = None
) -> RemoteKeyVersion:
    """The public half of a service key (no API key needed)."""
    client = ServiceClient(server, None, ca_file=ca_file)
    try:
        return fetch_key(client, name, version=version)
    finally:
        client.close()


def remote_keys(server: str, api_key: str, *, ca_file: str | Path | None = None) -> list[dict[str, Any]]:
    """The service's keys (names, types, versions); needs an API key with read or sign scope."""
    client = ServiceClient(server, api_key, ca_file=ca_file)
    try:
        return list_keys(client)
    finally:
        client.close()


__all__ = [
    "RemoteKeyVersion",
    "RemoteOpenPGPSigner",
    "RemoteSigner",
    "remote_keys",
    "remote_public_key",
]
