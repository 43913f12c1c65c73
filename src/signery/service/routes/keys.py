"""``/v1/keys``: create, list, read (public parts only), rotate, configure, delete; sign and verify."""

from __future__ import annotations

import base64
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response

from ..._internal.names import KEY_NAME_LENGTH, NAME_PATTERN
from ...errors import SigneryError
from ..deps import AdminCaller, CurrentCaller, State, action_of, deny, state_of
from ..keys import lifecycle, signing
from ..keys.models import SignItem, Verdict
from ..keys.signing import authorise, batch_of, compute, key_for, sign_document
from ..schemas import (
    ErrorPublic,
    KeyConfig,
    KeyCreate,
    KeyList,
    KeyPublic,
    OpenPGPSignRequest,
    OpenPGPSignResponse,
    SignRequest,
    SignResponse,
    VerdictPublic,
    VerifyRequest,
    VerifyResponse,
    decode_b64,
)

router = APIRouter(prefix="/keys", tags=["keys"])

KeyName = Annotated[str, Path(pattern=NAME_PATTERN, max_length=KEY_NAME_LENGTH, description="key name")]
MAX_LIST = 1000  # keys per page; page with ?after=


@router.post("", response_model=KeyPublic, status_code=201)
def create_key(body: KeyCreate, state: State, caller: AdminCaller) -> KeyPublic:
    spec = body.to_spec()
    private = lifecycle.generate_for(spec)
    with state.db.session() as session:
        key = lifecycle.create(session, spec, master=state.master, caller=caller.name, private=private)
    state.keys.forget(spec.name)
    return KeyPublic.of(key)


@router.get("", response_model=KeyList)
def list_keys(
    request: Request,
    state: State,
    caller: CurrentCaller,
    after: Annotated[str | None, Query(pattern=NAME_PATTERN, max_length=KEY_NAME_LENGTH)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIST)] = MAX_LIST,
) -> KeyList:
    if not caller.may_read():
        raise deny(request, caller, needs="read")
    with state.db.read_session() as session:
        return KeyList(keys=[KeyPublic.of(k) for k in lifecycle.list_keys(session, limit=limit, after=after)])


@router.get("/{name}", response_model=KeyPublic)
def get_key(name: KeyName, state: State) -> KeyPublic:
    """Public parts of every version (PEM, certificate, OpenPGP certificate); readable without an API key."""
    with state.db.read_session() as session:
        return KeyPublic.of(lifecycle.get(session, name))


@router.post("/{name}/rotate", response_model=KeyPublic)
def rotate_key(name: KeyName, state: State, caller: AdminCaller) -> KeyPublic:
    private = lifecycle.generate_for_rotation(state.db, name)
    with state.db.session() as session:
        key = lifecycle.rotate(session, name, master=state.master, caller=caller.name, private=private)
    state.keys.forget(name)
    return KeyPublic.of(key)


@router.post("/{name}/config", response_model=KeyPublic)
def configure_key(name: KeyName, body: KeyConfig, state: State, caller: AdminCaller) -> KeyPublic:
    with state.db.session() as session:
        key = lifecycle.configure(
            session,
            name,
            min_sign_version=body.min_sign_version,
            min_verify_version=body.min_verify_version,
            deletion_allowed=body.deletion_allowed,
            caller=caller.name,
        )
    state.keys.forget(name)
    return KeyPublic.of(key)


@router.delete("/{name}", status_code=204, response_class=Response)
def delete_key(name: KeyName, state: State, caller: AdminCaller) -> Response:
    with state.db.session() as session:
        lifecycle.delete(session, name, caller=caller.name)
    state.keys.forget(name)
    return Response(status_code=204)


def _error(err: SigneryError) -> ErrorPublic:
    return ErrorPublic(reason=err.reason.value, message=err.message)


@router.post("/{name}/sign", response_model=SignResponse, response_model_exclude_none=True)
async def sign(name: KeyName, body: SignRequest, request: Request, caller: CurrentCaller) -> Response:
    """Sign a digest (``digest`` + ``hash_algorithm``) or a small ``message``; or several with ``batch``."""
    doc = await sign_document(state_of(request), name, body, caller, action=action_of(request.method, request.url.path))
    return Response(doc, media_type="application/json")


@router.post("/{name}/verify", response_model=VerifyResponse, response_model_exclude_none=True)
async def verify(
    name: KeyName, body: VerifyRequest, request: Request, state: State, caller: CurrentCaller
) -> VerifyResponse:
    """Check signatures made by any version at or above the key's ``min_verify_version`` (or the given one)."""
    authorise(caller, name, to="verify", action=action_of(request.method, request.url.path))
    inputs, batch = batch_of(
        body.batch,
        body.single,
        single_given=any(v is not None for v in (body.digest, body.message, body.signature)),
    )
    pairs: list[tuple[SignItem, bytes] | SigneryError] = []
    for i in inputs:
        try:
            pairs.append((i.to_item(), decode_b64(i.signature, what="signature")))
        except SigneryError as err:
            if not batch:
                raise
            pairs.append(err)
    good = [p for p in pairs if not isinstance(p, SigneryError)]
    verdicts: list[Verdict | SigneryError] = []
    if good:
        key = await key_for(state, name, [p[0].version for p in good])
        verdicts, events = await compute(key, lambda: signing.verify(key, good, caller=caller.name))
        await state.audit.append_async(events)
    results = iter(verdicts)
    out: list[VerdictPublic] = []
    for pair in pairs:
        res: Verdict | SigneryError = pair if isinstance(pair, SigneryError) else next(results)
        if isinstance(res, SigneryError):
            if not batch:
                raise res
            out.append(VerdictPublic(error=_error(res)))
        else:
            out.append(VerdictPublic(valid=res.valid, key_id=res.key_id, version=res.version))
    if not batch:
        return VerifyResponse(**out[0].model_dump())
    return VerifyResponse(batch_results=out)


@router.post("/{name}/openpgp-sign", response_model=OpenPGPSignResponse)
async def openpgp_sign(
    name: KeyName, body: OpenPGPSignRequest, request: Request, state: State, caller: CurrentCaller
) -> OpenPGPSignResponse:
    """Sign an OpenPGP hash (of the data and the signature packet's trailer, computed by the client)."""
    authorise(caller, name, to="sign", action=action_of(request.method, request.url.path))
    digest = decode_b64(body.digest, what="digest")
    key = await key_for(state, name, [body.version])
    res, events = await compute(
        key,
        lambda: signing.openpgp_sign(
            state.keys, key, digest=digest, hash_algorithm=body.hash_algorithm, version=body.version, caller=caller.name
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
