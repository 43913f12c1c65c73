"""``/v1/api-keys`` (admin): create, list and revoke API keys."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from ..._internal.names import KEY_NAME_LENGTH, NAME_PATTERN
from ..apikeys import ApiKeyInfo, create_api_key, list_api_keys, parse_expiry, revoke_api_key
from ..deps import AdminCaller, State
from ..schemas import ApiKeyCreate, ApiKeyCreated, ApiKeyList, ApiKeyPublic

router = APIRouter(prefix="/api-keys", tags=["api-keys"])


def _public(info: ApiKeyInfo) -> ApiKeyPublic:
    return ApiKeyPublic(
        id=info.id,
        name=info.name,
        scopes=list(info.scopes),
        created_at=info.created_at,
        expires_at=info.expires_at,
        revoked_at=info.revoked_at,
    )


@router.post("", response_model=ApiKeyCreated, status_code=201)
def create(body: ApiKeyCreate, state: State, caller: AdminCaller) -> ApiKeyCreated:
    with state.db.session() as session:
        info, token = create_api_key(
            session, name=body.name, scopes=body.scopes, expires_at=parse_expiry(body.expires_at), caller=caller.name
        )
    return ApiKeyCreated(**_public(info).model_dump(), token=token)


@router.get("", response_model=ApiKeyList)
def list_(state: State, caller: AdminCaller) -> ApiKeyList:
    with state.db.session() as session:
        return ApiKeyList(api_keys=[_public(i) for i in list_api_keys(session)])


@router.post("/{name}/revoke", response_model=ApiKeyPublic)
def revoke(
    name: Annotated[str, Path(pattern=NAME_PATTERN, max_length=KEY_NAME_LENGTH)], state: State, caller: AdminCaller
) -> ApiKeyPublic:
    with state.db.session() as session:
        info = revoke_api_key(session, name=name, caller=caller.name)
    state.forget_callers()
    return _public(info)
