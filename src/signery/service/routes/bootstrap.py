"""``POST /v1/bootstrap`` (admin): create a whole set of keys from one document, idempotently, all or nothing."""

from __future__ import annotations

from fastapi import APIRouter

from ..deps import AdminCaller, State
from ..schemas import BootstrapRequest, BootstrapResponse, KeyPublic
from .keys import spec_of

router = APIRouter(prefix="/bootstrap", tags=["keys"])


@router.post("", response_model=BootstrapResponse)
def bootstrap(body: BootstrapRequest, state: State, caller: AdminCaller) -> BootstrapResponse:
    specs = [spec_of(k) for k in body.keys]
    with state.db.session() as session:
        infos, created = state.keystore.bootstrap(session, specs, caller=caller.name)
    return BootstrapResponse(keys=[KeyPublic.of(i) for i in infos], created=created)
