"""``/v1/keys``: create, list, read (public parts only), rotate, configure, delete; sign and verify."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Annotated, TypeVar

from fastapi import APIRouter, Path, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from ...errors import SigneryError, UsageError
from ..apikeys import Caller
from ..deps import AdminCaller, CurrentCaller, ServiceState, State, action_of, denial, deny, state_of
from ..keystore import KeyMeta, KeySpec, Signature, SignItem, Verdict
from ..names import NAME_PATTERN, check_name
from ..schemas import (
    ErrorPublic,
    KeyConfig,
    KeyCreate,
    KeyList,
    KeyPublic,
    OpenPGPSignRequest,
    OpenPGPSignResponse,
    SignInput,
    SignRequest,
    SignResponse,
    VerdictPublic,
    VerifyInput,
    VerifyRequest,
    VerifyResponse,
    decode_b64,
)

router = APIRouter(prefix="/keys", tags=["keys"])

KeyName = Annotated[str, Path(pattern=NAME_PATTERN, max_length=64, description="key name")]
MAX_LIST = 1000  # keys per page; page with ?after=
T = TypeVar("T")
_COMPACT = json.JSONEncoder(separators=(",", ":"))  # json.dumps with arguments builds an encoder on every call


def spec_of(body: KeyCreate) -> KeySpec:
    return KeySpec(
        name=body.name,
        type=body.type,
        template=body.template,
        subject=body.subject,
        issuer=body.issuer,
        key_algorithm=body.key_algorithm,
        days=body.days,
        uid=body.uid,
    )


@router.post("", response_model=KeyPublic, status_code=201)
def create_key(body: KeyCreate, state: State, caller: AdminCaller) -> KeyPublic:
    spec = spec_of(body)
    private = state.keystore.generate_for(spec)
    with state.db.session() as session:
        info = state.keystore.create(session, spec, caller=caller.name, private=private)
    state.keystore.forget(spec.name)
    return KeyPublic.of(info)


@router.get("", response_model=KeyList)
def list_keys(
    request: Request,
    state: State,
    caller: CurrentCaller,
    after: Annotated[str | None, Query(pattern=NAME_PATTERN, max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIST)] = MAX_LIST,
) -> KeyList:
    if not caller.may_read():
        raise deny(request, caller, needs="read")
    with state.db.read_session() as session:
        return KeyList(keys=[KeyPublic.of(k) for k in state.keystore.list_keys(session, limit=limit, after=after)])


@router.get("/{name}", response_model=KeyPublic)
def get_key(name: KeyName, state: State) -> KeyPublic:
    """Public parts of every version (PEM, certificate, OpenPGP certificate); readable without an API key."""
    with state.db.read_session() as session:
        return KeyPublic.of(state.keystore.get(session, check_name(name)))


@router.post("/{name}/rotate", response_model=KeyPublic)
def rotate_key(name: KeyName, state: State, caller: AdminCaller) -> KeyPublic:
    private = state.keystore.generate_for_rotation(state.db, check_name(name))
    with state.db.session() as session:
        info = state.keystore.rotate(session, name, caller=caller.name, private=private)
    state.keystore.forget(name)
    return KeyPublic.of(info)


@router.post("/{name}/config", response_model=KeyPublic)
def configure_key(name: KeyName, body: KeyConfig, state: State, caller: AdminCaller) -> KeyPublic:
    with state.db.session() as session:
        info = state.keystore.configure(
            session,
            check_name(name),
            min_sign_version=body.min_sign_version,
            min_verify_version=body.min_verify_version,
            deletion_allowed=body.deletion_allowed,
            caller=caller.name,
        )
    state.keystore.forget(name)
    return KeyPublic.of(info)


@router.delete("/{name}", status_code=204, response_class=Response)
def delete_key(name: KeyName, state: State, caller: AdminCaller) -> Response:
    with state.db.session() as session:
        state.keystore.delete(session, check_name(name), caller=caller.name)
    state.keystore.forget(name)
    return Response(status_code=204)


def _error(err: SigneryError) -> ErrorPublic:
    return ErrorPublic(reason=err.reason.value, message=err.message)


def _items(body: SignRequest | VerifyRequest) -> list[SignInput] | None:
    single = any(v is not None for v in (body.digest, body.message))
    if body.batch is not None:
        if single:
            raise UsageError("give either batch or a single digest/message, not both")
        if not body.batch:
            raise UsageError("batch is empty")
        return list(body.batch)
    return None


async def _meta(state: ServiceState, name: str, versions: list[int | None]) -> KeyMeta:
    wanted = max((v for v in versions if v is not None), default=None)
    meta = state.keystore.cached_meta(name, version=wanted)
    if meta is None:
        meta = await run_in_threadpool(state.keystore.load_meta, state.db, name)
    return meta


async def _compute(meta: KeyMeta, fn: Callable[[], T]) -> T:
    # Ed25519 and ECDSA take microseconds: run them on the event loop. RSA takes milliseconds: not there.
    if any(v.algorithm.startswith("rsa") for v in meta.versions.values()):
        return await run_in_threadpool(fn)
    return fn()


@router.post("/{name}/sign", response_model=SignResponse, response_model_exclude_none=True)
async def sign(name: KeyName, body: SignRequest, request: Request, caller: CurrentCaller) -> Response:
    """Sign a digest (``digest`` + ``hash_algorithm``) or a small ``message``; or several with ``batch``."""
    doc = await sign_document(state_of(request), name, body, caller, action=action_of(request.method, request.url.path))
    return Response(doc, media_type="application/json")


async def sign_document(state: ServiceState, name: str, body: SignRequest, caller: Caller, *, action: str) -> bytes:
    """The JSON response to a sign request, once every signature in it is audited (the lean path shares this).

    Raises:
        DeniedError: 403, ``caller`` may not sign with ``name``.
        SigneryError: a single (non-batch) item that could not be signed.
    """
    check_name(name)
    if not caller.may_sign(name):
        raise denial(caller, needs=f"sign:{name}", action=action, key_name=name)
    batch = _items(body)
    inputs = batch if batch is not None else [body]
    items: list[SignItem | SigneryError] = []
    for i in inputs:
        try:
            items.append(i.to_item())
        except SigneryError as err:
            if batch is None:
                raise
            items.append(err)
    good = [i for i in items if isinstance(i, SignItem)]
    results_list: list[Signature | SigneryError] = []
    if good:
        meta = await _meta(state, name, [i.version for i in good])
        results_list, events = await _compute(meta, lambda: state.keystore.sign(meta, good, caller=caller.name))
        await state.audit.append_async(events)
    results = iter(results_list)
    # Built by hand rather than through the response model: this is the hot path, and the shape is SignResponse's.
    out: list[dict[str, object]] = []
    for item in items:
        res: Signature | SigneryError = item if isinstance(item, SigneryError) else next(results)
        if isinstance(res, SigneryError):
            if batch is None:
                raise res
            out.append({"error": {"reason": res.reason.value, "message": res.message}})
        else:
            out.append(
                {
                    "signature": base64.b64encode(res.signature).decode(),
                    "key_id": res.key_id,
                    "version": res.version,
                    "algorithm": res.algorithm,
                }
            )
    doc = out[0] if batch is None else {"batch_results": out}
    return _COMPACT.encode(doc).encode()


@router.post("/{name}/verify", response_model=VerifyResponse, response_model_exclude_none=True)
async def verify(
    name: KeyName, body: VerifyRequest, request: Request, state: State, caller: CurrentCaller
) -> VerifyResponse:
    """Check signatures made by any version at or above the key's ``min_verify_version`` (or the given one)."""
    check_name(name)
    if not caller.may_verify(name):
        raise deny(request, caller, needs=f"read or sign:{name}", key_name=name)
    batch: list[VerifyInput] | None = None
    if body.batch is not None:
        if body.digest is not None or body.message is not None or body.signature is not None:
            raise UsageError("give either batch or a single digest/message, not both")
        if not body.batch:
            raise UsageError("batch is empty")
        batch = list(body.batch)
    else:
        if body.signature is None:
            raise UsageError("signature is required")
        batch_one = VerifyInput(
            digest=body.digest,
            message=body.message,
            signature=body.signature,
            hash_algorithm=body.hash_algorithm,
            signature_algorithm=body.signature_algorithm,
            version=body.version,
        )
    inputs = batch if batch is not None else [batch_one]
    pairs: list[tuple[SignItem, bytes] | SigneryError] = []
    for i in inputs:
        try:
            pairs.append((i.to_item(), decode_b64(i.signature, what="signature")))
        except SigneryError as err:
            if batch is None:
                raise
            pairs.append(err)
    good = [p for p in pairs if not isinstance(p, SigneryError)]
    verdicts: list[Verdict | SigneryError] = []
    if good:
        meta = await _meta(state, name, [p[0].version for p in good])
        verdicts, events = await _compute(meta, lambda: state.keystore.verify(meta, good, caller=caller.name))
        await state.audit.append_async(events)
    results = iter(verdicts)
    out: list[VerdictPublic] = []
    for pair in pairs:
        res: Verdict | SigneryError = pair if isinstance(pair, SigneryError) else next(results)
        if isinstance(res, SigneryError):
            if batch is None:
                raise res
            out.append(VerdictPublic(error=_error(res)))
        else:
            out.append(VerdictPublic(valid=res.valid, key_id=res.key_id, version=res.version))
    if batch is None:
        return VerifyResponse(**out[0].model_dump())
    return VerifyResponse(batch_results=out)


@router.post("/{name}/openpgp-sign", response_model=OpenPGPSignResponse)
async def openpgp_sign(
    name: KeyName, body: OpenPGPSignRequest, request: Request, state: State, caller: CurrentCaller
) -> OpenPGPSignResponse:
    """Sign an OpenPGP hash (of the data and the signature packet's trailer, computed by the client)."""
    check_name(name)
    if not caller.may_sign(name):
        raise deny(request, caller, needs=f"sign:{name}", key_name=name)
    digest = decode_b64(body.digest, what="digest")
    meta = await _meta(state, name, [body.version])
    res, events = await _compute(
        meta,
        lambda: state.keystore.openpgp_sign(
            meta, digest=digest, hash_algorithm=body.hash_algorithm, version=body.version, caller=caller.name
        ),
    )
    await state.audit.append_async(events)
    return OpenPGPSignResponse(
        signature=base64.b64encode(res.signature).decode(),
        fingerprint=res.fingerprint,
        pubkey_algorithm=res.pubkey_algorithm,
        key_created=res.key_created,
        version=res.version,
    )
