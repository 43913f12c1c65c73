from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool

from ...errors import EnvironmentFailure
from ..deps import StoreDep
from ..schemas import Health

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health)
async def healthz(store: StoreDep) -> dict[str, str]:
    """Liveness and database reachability."""

    def ping() -> None:
        try:
            with store.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except SQLAlchemyError as exc:
            raise EnvironmentFailure("database unreachable", subject="database") from exc

    await run_in_threadpool(ping)
    return {"status": "ok"}
