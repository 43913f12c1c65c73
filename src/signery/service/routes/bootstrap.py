"""``POST /v1/bootstrap`` (admin): create a whole set of keys from one document, idempotently, all or nothing."""

from __future__ import annotations

from fastapi import APIRouter

from ..deps import AdminCaller, State
from ..schemas import BootstrapRequest, BootstrapResponse, KeyPublic
from ..storage import KeyRow
from .keys import spec_of

router = APIRouter(prefix="/bootstrap", tags=["keys"])


@router.post("", response_model=BootstrapResponse)
def bootstrap(body: BootstrapRequest, state: State, caller: AdminCaller) -> BootstrapResponse:
    specs = [spec_of(k) for k in body.keys]
    with state.db.read_session() as session:
        missing = [s for s in specs if session.get(KeyRow, s.name) is None]
    privates = {s.name: state.keystore.generate_for(s) for s in missing}
    with state.db.session() as session:
        infos, created = state.keystore.bootstrap(session, specs, caller=caller.name, privates=privates)
    for name in created:
        state.keystore.forget(name)
    return BootstrapResponse(keys=[KeyPublic.of(i) for i in infos], created=created)
