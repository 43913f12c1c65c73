"""``POST /v1/bootstrap`` (admin): create a whole set of keys from one document, idempotently, all or nothing."""

from __future__ import annotations

from fastapi import APIRouter

from ..deps import AdminCaller, State
from ..keys import lifecycle
from ..schemas import BootstrapRequest, BootstrapResponse, KeyPublic
from ..storage import KeyRow

router = APIRouter(prefix="/bootstrap", tags=["keys"])


@router.post("", response_model=BootstrapResponse)
def bootstrap(body: BootstrapRequest, state: State, caller: AdminCaller) -> BootstrapResponse:
    specs = [k.to_spec() for k in body.keys]
    with state.db.read_session() as session:
        missing = [s for s in specs if session.get(KeyRow, s.name) is None]
    privates = {s.name: lifecycle.generate_for(s) for s in missing}
    with state.db.session() as session:
        keys, created = lifecycle.bootstrap(session, specs, master=state.master, caller=caller.name, privates=privates)
    for name in created:
        state.keys.forget(name)
    return BootstrapResponse(keys=[KeyPublic.of(k) for k in keys], created=created)
