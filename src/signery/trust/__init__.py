"""The trust store: which keys are trusted, under what names, until when, and for what.

A :class:`TrustedKey` binds a public key to a name, an optional expiry, a revocation flag and
:class:`Constraints` (which categories it may claim, which package names it may sign, which formats). A
:class:`TrustSet` is an immutable set of them used by verifiers; an empty set trusts nothing. A
:class:`TrustStore` persists a set as one JSON document under a directory, written atomically under a lock.
``_model.py`` holds the keys and sets, ``_files.py`` reads key files, ``_store.py`` keeps the store.

Example::

    store = TrustStore(Path("~/.config/signery").expanduser())
    store.add(load_trusted_key_file(Path("alice.public.pem"), name="alice"))
    trust = store.load()
"""

from __future__ import annotations

from ._files import LoadedKey as LoadedKey
from ._files import load_trusted_key_file as load_trusted_key_file
from ._model import MAX_KEY_FILE_BYTES as MAX_KEY_FILE_BYTES
from ._model import MAX_TRUST_FILE_BYTES as MAX_TRUST_FILE_BYTES
from ._model import MIN_ID_DIGITS as MIN_ID_DIGITS
from ._model import TRUST_FILE as TRUST_FILE
from ._model import Constraints as Constraints
from ._model import KeyKind as KeyKind
from ._model import TrustedKey as TrustedKey
from ._model import TrustSet as TrustSet
from ._model import normalize_key_ident as normalize_key_ident
from ._model import parse_expiry as parse_expiry
from ._model import resolve_key as resolve_key
from ._model import short_key_id as short_key_id
from ._model import trusted_key_from_bundle as trusted_key_from_bundle
from ._model import trusted_key_from_public as trusted_key_from_public
from ._store import AddOutcome as AddOutcome
from ._store import TrustStore as TrustStore

__all__ = [
    "AddOutcome",
    "Constraints",
    "LoadedKey",
    "TrustSet",
    "TrustStore",
    "TrustedKey",
    "load_trusted_key_file",
    "normalize_key_ident",
    "parse_expiry",
    "resolve_key",
    "short_key_id",
    "trusted_key_from_bundle",
    "trusted_key_from_public",
]
