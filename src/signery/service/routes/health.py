"""``GET /healthz``: unauthenticated liveness (the process answers and its database does)."""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import text

from ..deps import State
from ..schemas import Health

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health)
def healthz(state: State) -> Health:
    with state.db.read_session() as session:
        session.execute(text("SELECT 1"))
    return Health(status="ok")
