"""What one server process keeps in memory about keys: their descriptions, briefly, and unsealed private keys.

- Key descriptions (:class:`~.models.Key`, with their versions and public keys) are fresh for
  :data:`KEY_CACHE_SECONDS`: a rotation, a new ``min_sign_version`` or a deletion made through another process reaches
  this one within that time, and at once when made through this one (the routes :meth:`KeyCache.forget` the key).
- Unsealed private keys are kept least-recently-used first, at most :data:`MAX_CACHED_KEYS`: opening a sealed RSA
  key costs milliseconds. They are keyed by name, version and key id, so a key deleted and created again under its
  name never meets the old private key. This is the only place a sealed private key is opened for signing.
- Versions kept in the server's PKCS#11 token have no private key here: their signer is a
  :class:`~.token.TokenSigner` (a :class:`~signery.pkcs11.PKCS11Signer`), one per version, its session kept open,
  itself thread-safe, kept and evicted with the unsealed keys. :meth:`KeyCache.signing_key` gives either kind.

Thread-safe: one lock guards both maps, and is never held while a key is opened or read.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict

from ...errors import UsageError
from ...keys import FileSigner, PrivateKey, Signer
from ..settings import MasterKey
from ..storage import Database
from .lifecycle import get
from .models import Key, KeyVersion
from .token import TokenSigner, token_of

MAX_CACHED_KEYS = 1024  # per process, for descriptions and for unsealed keys alike
KEY_CACHE_SECONDS = 1.0  # changes made through another server process reach this one within this time


class KeyCache:
    """The key cache of one process, opening private keys with one master key."""

    def __init__(self, master: MasterKey) -> None:
        self.master = master
        self._keys: OrderedDict[str, tuple[Key, float]] = OrderedDict()
        self._unsealed: OrderedDict[tuple[str, int, str], tuple[PrivateKey, FileSigner]] = OrderedDict()
        self._tokens: OrderedDict[tuple[str, int, str], TokenSigner] = OrderedDict()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        counts = f"{len(self._keys)} keys, {len(self._unsealed)} unsealed, {len(self._tokens)} in the token"
        return f"KeyCache(master={self.master!r}, {counts})"

    @property
    def unsealed_count(self) -> int:
        """How many private keys this process holds open."""
        with self._lock:
            return len(self._unsealed)

    @property
    def token_signer_count(self) -> int:
        """How many token-backed versions this process holds a signer (and a session) for."""
        with self._lock:
            return len(self._tokens)

    def fresh(self, name: str, *, version: int | None = None) -> Key | None:
        """The cached description of ``name`` if it is fresh (and knows ``version``); else ``None``: :meth:`load`."""
        with self._lock:
            hit = self._keys.get(name)
        if hit is None or time.monotonic() - hit[1] > KEY_CACHE_SECONDS:
            return None
        if version is not None and version not in hit[0].versions:
            return None
        return hit[0]

    def load(self, db: Database, name: str) -> Key:
        """Read ``name`` and its versions from the database, and keep the description. Blocking."""
        with db.read_session() as session:
            key = get(session, name)
        with self._lock:
            self._keys[name] = (key, time.monotonic())
            self._keys.move_to_end(name)
            while len(self._keys) > MAX_CACHED_KEYS:
                self._keys.popitem(last=False)
        return key

    def forget(self, name: str) -> None:
        """Drop what this process knows of ``name``: its description and its unsealed private keys."""
        with self._lock:
            self._keys.pop(name, None)
            for k in [k for k in self._unsealed if k[0] == name]:
                del self._unsealed[k]
            closing = [self._tokens.pop(k) for k in [k for k in self._tokens if k[0] == name]]
        for signer in closing:
            signer.close()

    def close(self) -> None:
        """Close every token session this process holds (the next signature opens one again)."""
        with self._lock:
            closing = list(self._tokens.values())
            self._tokens.clear()
        for signer in closing:
            signer.close()

    def signing_key(self, version: KeyVersion) -> Signer:
        """The signer of ``version``: over its unsealed private key, or over its object in the PKCS#11 token.

        Raises:
            ConfigError: a token-backed version and no token configured, a wrong PIN, a missing token (503).
            NotFoundError: the token is there, the version's object is not (404 ``unknown-key``).
        """
        if version.token_object is None:
            return self.signer(version)[1]
        return self.token_signer(version)

    def token_signer(self, version: KeyVersion) -> TokenSigner:
        """The signer of a token-backed ``version``, its session opened (and its key checked) on first use."""
        if version.token_object is None:
            raise UsageError(f"key {version.name} v{version.version} is sealed, not in the token", subject=version.name)
        cache_key = (version.name, version.version, version.key_id)
        with self._lock:
            hit = self._tokens.get(cache_key)
            if hit is not None:
                self._tokens.move_to_end(cache_key)
                return hit
        token = token_of(self.master, name=version.name)
        signer = TokenSigner(
            token,
            version.token_object,
            name=version.name,
            version=version.version,
            public_pem=version.public_key_pem,
        )
        signer.public_key()  # opens the session, checks the object holds the recorded key
        closing: list[TokenSigner] = []
        with self._lock:
            existing = self._tokens.get(cache_key)
            if existing is not None:
                closing.append(signer)
                signer = existing
            else:
                self._tokens[cache_key] = signer
                while len(self._tokens) > MAX_CACHED_KEYS:
                    closing.append(self._tokens.popitem(last=False)[1])
        for s in closing:
            s.close()
        return signer

    def signer(self, version: KeyVersion) -> tuple[PrivateKey, FileSigner]:
        """The private key of a sealed ``version`` and a signer over it, unsealed on first use.

        Raises:
            UsageError: ``version`` is held in the PKCS#11 token (its private key never leaves it; use
                :meth:`signing_key`).
        """
        cache_key = (version.name, version.version, version.key_id)
        with self._lock:
            hit = self._unsealed.get(cache_key)
            if hit is not None:
                self._unsealed.move_to_end(cache_key)
                return hit
        private = version.unseal(self.master)
        entry = (private, FileSigner(private, name=version.name))
        with self._lock:
            self._unsealed[cache_key] = entry
            while len(self._unsealed) > MAX_CACHED_KEYS:
                self._unsealed.popitem(last=False)
        return entry


__all__ = ["KEY_CACHE_SECONDS", "MAX_CACHED_KEYS", "KeyCache"]
