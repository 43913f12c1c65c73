"""``/balena``: balenaSign's API, so that a meta-balena build signs against signery with ``SIGN_API=.../balena``.

Same paths, request fields, reply fields, base64 and status codes as balenaSign (``docs/balena.md``); signery's
API keys (``X-API-Key``) and scopes, and every signature and key creation audited. The public GETs need no key, as
in balenaSign. There is no ``/export``: private keys never leave the service.

The routes that take a whole artifact (``/gpg/sign``, ``/kmod/sign``, ``/secureboot/efi``, ``/rsa/sign``,
``/secureboot/db``, ``/secureboot/dbx``) read their body as it streams in (:mod:`..balena_body`): the base64 is
decoded to a file in the spool directory, and the signed artifact is streamed back from a file as base64.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import re
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Request
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool

from ...errors import NotFoundError, SigneryError, UsageError
from .. import balena
from ..apikeys import Caller
from ..audit import AuditEvent
from ..balena_body import SpooledBody, encode_file, spool
from ..balena_store import Alias, alias_cache, cert_list
from ..deps import CurrentCaller, action_of, state_of
from ..keys.models import Key
from ..keys.signing import authorise, key_for
from ..state import ServiceState

PREFIX = "/balena"
router = APIRouter(prefix=PREFIX, tags=["balena"])
T = TypeVar("T")

# The routes whose bodies are whole artifacts: BodyLimit gives them the artifact limit (settings).
LARGE_ROUTES = ("/gpg/sign", "/kmod/sign", "/secureboot/efi", "/rsa/sign", "/secureboot/db", "/secureboot/dbx")
_HEX_ID = re.compile(r"^[a-fA-F0-9]+$")
_DIGEST = re.compile(r"^[a-fA-F0-9]{64}$")
_ID = Annotated[str, PathParam(min_length=1, max_length=128)]
_LIST = Annotated[str, PathParam(min_length=1, max_length=8192)]


@dataclass(frozen=True)
class BalenaConfig:
    """Where artifacts are spooled and how large their bodies may be (from the service's settings)."""

    spool_dir: Path
    limit: int


def large_paths() -> list[str]:
    return [PREFIX + p for p in LARGE_ROUTES]


def _config(request: Request) -> BalenaConfig:
    cfg = request.app.state.balena
    assert isinstance(cfg, BalenaConfig)
    return cfg


def _action(request: Request) -> str:
    return action_of(request.method, request.url.path)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _read(state: ServiceState, fn: Callable[[Any], T]) -> T:
    with state.db.read_session() as session:
        return fn(session)


async def _resolve(state: ServiceState, kind: str, alias: str) -> tuple[Alias, Key]:
    """The alias and the key behind balena id ``alias``: 404 when unknown. Both come from this process's caches
    when fresh (:class:`~..balena_store.AliasCache`, :class:`~..keys.cache.KeyCache`)."""
    cache = alias_cache(state.db)
    a = cache.fresh(kind, alias)
    if a is not None:
        try:
            return a, await key_for(state, a.key_name, [None])
        except NotFoundError:
            cache.forget(kind, alias)  # its key is gone: ask the database, which answers as balenaSign would
    a = await run_in_threadpool(cache.load, state.db, kind, alias)
    return a, await key_for(state, a.key_name, [None])


async def signing_key(state: ServiceState, caller: Caller, kind: str, alias: str, *, action: str) -> tuple[Alias, Key]:
    """balena id ``alias`` of ``kind``, known (404) and signable by ``caller`` (403, audited as ``action``)."""
    a, key = await _resolve(state, kind, alias)
    authorise(caller, a.key_name, to="sign", action=action)
    return a, key


async def _signing_key(request: Request, caller: Caller, kind: str, alias: str) -> tuple[Alias, Key]:
    return await signing_key(state_of(request), caller, kind, alias, action=_action(request))


async def _audited(
    state: ServiceState,
    caller: Any,
    action: str,
    key: Key,
    digest: str | None,
    fn: Callable[[], tuple[int, T]],
    *,
    detail: str | None = None,
) -> T:
    """Run ``fn`` (which returns the version that signed, and the result) in a worker thread; audit it, refused
    or done, before the result is handed out."""
    try:
        version, result = await run_in_threadpool(fn)
    except SigneryError as err:
        event = AuditEvent(
            caller.name, action, f"refused:{err.reason.value}", key_name=key.name, digest=digest, detail=err.message
        )
        await state.audit.append_async([event])
        raise
    event = AuditEvent(caller.name, action, "ok", key_name=key.name, key_version=version, digest=digest, detail=detail)
    await state.audit.append_async([event])
    return result


def _text(fields: dict[str, Any], name: str, *, pattern: re.Pattern[str] | None = None, max_length: int = 256) -> str:
    value = fields.get(name)
    if not isinstance(value, str) or not value or len(value) > max_length:
        raise UsageError(f"{name} is required (a string of 1 to {max_length} characters)", subject=name)
    if pattern is not None and not pattern.fullmatch(value):
        raise UsageError(f"{name} {value[:80]!r} does not match {pattern.pattern}", subject=name)
    return value


def _only(fields: dict[str, Any], allowed: set[str]) -> None:
    extra = sorted(set(fields) - allowed)
    if extra:
        raise UsageError(f"unknown field {extra[0]!r}", subject=extra[0])


async def _spooled(request: Request, large: str, hashes: tuple[str, ...]) -> SpooledBody:
    cfg = _config(request)
    cfg.spool_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    body = await spool(request.stream(), large={large}, directory=cfg.spool_dir, limit=cfg.limit, hash_names=hashes)
    if large not in body.files:
        body.cleanup()
        raise UsageError(f"{large} is required (base64)", subject=large)
    return body


async def _keyed_payload(
    request: Request,
    caller: Caller,
    hash_name: str,
    kind: str,
    *,
    pattern: re.Pattern[str] | None = None,
    max_length: int,
) -> tuple[SpooledBody, str, Key]:
    """A ``{key_id, payload}`` body, spooled with the payload's ``hash_name`` digest, and the signing key of ``kind``
    that ``key_id`` names: the body, the key id as given and the key. When that fails the body is removed here;
    else the caller removes it."""
    body = await _spooled(request, "payload", (hash_name,))
    try:
        _only(body.fields, {"key_id", "payload"})
        key_id = _text(body.fields, "key_id", pattern=pattern, max_length=max_length)
        _a, key = await _signing_key(request, caller, kind, key_id)
    except BaseException:
        body.cleanup()
        raise
    return body, key_id, key


def reply_document(field: str, data: bytes) -> bytes:
    """``{"<field>":"<base64>"}``, byte for byte what ``JSONResponse({field: _b64(data)})`` sends."""
    return b'{"' + field.encode() + b'":"' + base64.b64encode(data) + b'"}'


def _file_reply(field: str, path: Path, cleanup: Callable[[], None]) -> StreamingResponse:
    """``{"<field>": "<base64 of the file>"}``, streamed from the file, which ``cleanup`` then removes: read and
    encoded 3 MiB at a time in a worker thread (:func:`~..balena_body.encode_file`), never held whole."""
    size = path.stat().st_size
    head, tail = f'{{"{field}":"'.encode(), b'"}'
    length = len(head) + (size + 2) // 3 * 4 + len(tail)

    def chunks() -> Iterator[bytes | memoryview]:
        yield head
        yield from encode_file(path)
        yield tail

    return StreamingResponse(
        chunks(),
        media_type="application/json",
        headers={"content-length": str(length)},
        background=BackgroundTask(cleanup),
    )


def _temp_output(cfg: BalenaConfig, suffix: str) -> Path:
    fd, name = tempfile.mkstemp(dir=cfg.spool_dir, prefix="balena-", suffix=suffix)
    import os

    os.close(fd)
    return Path(name)


def _unlink(*paths: Path) -> Callable[[], None]:
    def run() -> None:
        for p in paths:
            with contextlib.suppress(FileNotFoundError):
                p.unlink()

    return run


# ---- signing ------------------------------------------------------------------------------------------------------


@router.post("/gpg/sign")
async def gpg_sign(request: Request, caller: CurrentCaller) -> JSONResponse:
    """``{key_id: fingerprint or long key id, payload}`` -> ``{signature}``: a binary detached OpenPGP signature."""
    state = state_of(request)
    body, key_id, key = await _keyed_payload(request, caller, "sha256", "gpg", pattern=_HEX_ID, max_length=42)
    out = _temp_output(_config(request), ".sig")
    try:
        f = body.files["payload"]

        def work() -> tuple[int, bytes]:
            v, signer = balena.openpgp_signer(state.keys, key, key_id)
            return v.version, balena.sign_gpg(signer, f.path, out)

        sig = await _audited(state, caller, GPG_SIGN, key, f"sha256:{f.digests['sha256'].hex()}", work)
        return JSONResponse({"signature": _b64(sig)})
    finally:
        body.cleanup()
        _unlink(out)()


@router.post("/kmod/sign")
async def kmod_sign(request: Request, caller: CurrentCaller) -> Response:
    """``{key_id: cert id, payload: .ko}`` -> ``{signed}``: the module with sign-file's signature appended."""
    state = state_of(request)
    body, cert_id, key = await _keyed_payload(request, caller, "sha512", "x509", max_length=100)
    try:
        f = body.files["payload"]
        if f.size == 0:
            raise UsageError("payload is empty", subject="payload")

        def work() -> tuple[int, Path]:
            v, cert = balena.x509_certificate(key, cert_id)
            return v.version, balena.sign_kmod(state.keys.signer(v)[1], cert, f.path, f.digests["sha512"])

        path = await _audited(state, caller, "balena.kmod-sign", key, f"sha512:{f.digests['sha512'].hex()}", work)
    except BaseException:
        body.cleanup()
        raise
    return _file_reply("signed", path, body.cleanup)


@router.post("/secureboot/efi")
async def efi_sign(request: Request, caller: CurrentCaller) -> Response:
    """``{key_id: cert id, payload: PE}`` -> ``{signed}``: the image with an Authenticode signature, as sbsign."""
    state = state_of(request)
    body, cert_id, key = await _keyed_payload(request, caller, "sha256", "x509", max_length=100)
    out = _temp_output(_config(request), ".signed")
    try:
        f = body.files["payload"]

        def work() -> tuple[int, Path]:
            v, cert = balena.x509_certificate(key, cert_id)
            return v.version, balena.sign_efi(state.keys.signer(v)[1], cert, f.path, out)

        await _audited(state, caller, "balena.efi-sign", key, f"sha256:{f.digests['sha256'].hex()}", work)
        body.cleanup()
    except BaseException:
        body.cleanup()
        _unlink(out)()
        raise
    return _file_reply("signed", out, _unlink(out))


@router.post("/rsa/sign")
async def rsa_sign(request: Request, caller: CurrentCaller) -> JSONResponse:
    """``{key_id: RSA id, payload}`` -> ``{signature}``: the Raspberry Pi ``rsa-eeprom-digest`` file."""
    state = state_of(request)
    body, key_id, key = await _keyed_payload(request, caller, "sha256", "rsa", pattern=_HEX_ID, max_length=128)
    try:
        digest = body.files["payload"].digests["sha256"]

        def work() -> tuple[int, bytes]:
            v, signer = balena.rsa_signer(state.keys, key, key_id)
            return v.version, balena.sign_rsa(signer, digest, now=time.time())

        text = await _audited(state, caller, "balena.rsa-sign", key, f"sha256:{digest.hex()}", work)
        return JSONResponse({"signature": _b64(text)})
    finally:
        body.cleanup()


class CertSignRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    cert_id: str = Field(min_length=1, max_length=100)
    digest: str = Field(pattern=_DIGEST.pattern)


@router.post("/cert/sign")
async def cert_sign(body: CertSignRequest, request: Request, caller: CurrentCaller) -> Response:
    """``{cert_id, digest: 64 hex}`` -> ``{signature}``: raw RSA PKCS#1 v1.5 (no DigestInfo), ``openssl pkeyutl``."""
    doc = await cert_sign_document(state_of(request), caller, body.cert_id, body.digest, action=_action(request))
    return Response(doc, media_type="application/json")


# ---- the small signatures, short of HTTP: shared with the fast path (service/fastpath.py) -----------------------

CERT_SIGN, GPG_SIGN = "balena.cert-sign", "balena.gpg-sign"


async def cert_sign_document(
    state: ServiceState, caller: Caller, cert_id: str, digest_hex: str, *, action: str
) -> bytes:
    """The reply to ``POST /cert/sign`` once its signature is audited; ``action`` names a denied request."""
    _a, key = await signing_key(state, caller, "x509", cert_id, action=action)
    digest = bytes.fromhex(digest_hex)

    def work() -> tuple[int, bytes]:
        v, _cert = balena.x509_certificate(key, cert_id)
        return v.version, balena.sign_raw(state.keys.signer(v)[1], digest)

    sig = await _audited(state, caller, CERT_SIGN, key, f"sha256:{digest.hex()}", work)
    return reply_document("signature", sig)


async def gpg_sign_document(state: ServiceState, caller: Caller, key_id: str, payload: bytes, *, action: str) -> bytes:
    """The reply to ``POST /gpg/sign`` of a payload small enough to be held in memory, once audited: the signature
    the spooling route makes of the same payload."""
    _a, key = await signing_key(state, caller, "gpg", key_id, action=action)
    digest = f"sha256:{hashlib.sha256(payload).hexdigest()}"

    def work() -> tuple[int, bytes]:
        v, signer = balena.openpgp_signer(state.keys, key, key_id)
        return v.version, balena.sign_gpg_bytes(signer, payload)

    return reply_document("signature", await _audited(state, caller, GPG_SIGN, key, digest, work))


def _flag(fields: dict[str, Any], name: str) -> bool:
    value = fields.get(name, False)
    if not isinstance(value, bool):
        raise UsageError(f"{name} must be true or false", subject=name)
    return value


def _ids(value: Any, what: str) -> list[str]:
    if isinstance(value, str) or (isinstance(value, list) and all(isinstance(i, str) for i in value)):
        return cert_list(value)
    raise UsageError(f"{what} must be a certificate id or a list of them", subject=what)


async def _external_esl(request: Request, caller: Any, variable: str, body: SpooledBody) -> JSONResponse:
    """``{esl, signing_key_id, append?}`` -> ``{auth}``: the client's ESL signed for ``variable``, not stored."""
    from ...formats.uefi import MAX_ESL_BYTES

    state = state_of(request)
    _only(body.fields, {"esl", "signing_key_id", "append"})
    signing_id = _text(body.fields, "signing_key_id", max_length=100)
    append_mode = _flag(body.fields, "append")
    f = body.files["esl"]
    if f.size > MAX_ESL_BYTES:
        raise UsageError(f"the ESL is larger than {MAX_ESL_BYTES} bytes", subject="esl")
    _a, key = await _signing_key(request, caller, "x509", signing_id)
    esl = f.path.read_bytes()

    def work() -> tuple[int, bytes]:
        v, cert = balena.x509_certificate(key, signing_id)
        return v.version, balena.make_auth(variable, esl, state.keys.signer(v)[1], cert, append=append_mode)

    digest = f"sha256:{f.digests['sha256'].hex()}"
    auth = await _audited(state, caller, f"balena.secureboot-{variable.lower()}", key, digest, work, detail=variable)
    return JSONResponse({"auth": _b64(auth)})


async def _stored_list(request: Request, caller: Any, variable_key: str, fields: dict[str, Any]) -> JSONResponse:
    """``{key_id: id or [ids], signing_key_id?, append?}`` -> ``{}``: the list's ``.auth``, made once and stored."""
    state = state_of(request)
    _only(fields, {"key_id", "signing_key_id", "append"})
    ids = _ids(fields.get("key_id"), "key_id")
    append_mode = _flag(fields, "append")
    given = fields.get("signing_key_id")
    if given is not None and not isinstance(given, str):
        raise UsageError("signing_key_id must be a certificate id", subject="signing_key_id")

    def signer_id() -> str:
        return given or _read(state, lambda s: balena.default_list_signer(s, variable_key, ids))

    sid = await run_in_threadpool(signer_id)
    await _signing_key(request, caller, "x509", sid)

    def work() -> None:
        with state.db.session() as session:
            balena.make_list_auth(
                session, state.keys, variable_key, ids, signer_id=sid, append_mode=append_mode, caller=caller.name
            )

    await run_in_threadpool(work)
    return JSONResponse({})


@router.post("/secureboot/db")
async def secureboot_db(request: Request, caller: CurrentCaller) -> JSONResponse:
    """External ESL (``{esl, signing_key_id, append}`` -> ``{auth}``) or a list of certificate ids (stored)."""
    body = await _spooled_optional(request, "esl")
    try:
        if "esl" in body.files:
            return await _external_esl(request, caller, "db", body)
        return await _stored_list(request, caller, "db", body.fields)
    finally:
        body.cleanup()


@router.post("/secureboot/dbx")
async def secureboot_dbx(request: Request, caller: CurrentCaller) -> JSONResponse:
    """External ESL only (balenaSign stores no dbx): ``{esl, signing_key_id, append}`` -> ``{auth}``."""
    body = await _spooled(request, "esl", ("sha256",))
    try:
        return await _external_esl(request, caller, "dbx", body)
    finally:
        body.cleanup()


async def _spooled_optional(request: Request, large: str) -> SpooledBody:
    cfg = _config(request)
    cfg.spool_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    return await spool(request.stream(), large={large}, directory=cfg.spool_dir, limit=cfg.limit)


class ListRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    key_id: str | list[str]
    signing_key_id: str | None = Field(default=None, max_length=100)
    append: bool = False


@router.post("/secureboot/pk")
async def secureboot_pk(body: ListRequest, request: Request, caller: CurrentCaller) -> JSONResponse:
    """Make (once) and store PK.auth for a certificate list; self-signed unless ``signing_key_id``."""
    return await _stored_list(request, caller, "pk", body.model_dump(exclude_none=True))


@router.post("/secureboot/kek")
async def secureboot_kek(body: ListRequest, request: Request, caller: CurrentCaller) -> JSONResponse:
    """Make (once) and store KEK.auth for a certificate list, signed by the PK (``signing_key_id``, or the one PK)."""
    return await _stored_list(request, caller, "kek", body.model_dump(exclude_none=True))


# The public material and key creation routes: routes/balena_keys.py, on this router.
from . import balena_keys as _balena_keys  # noqa: E402,F401  - registers its routes on `router`
