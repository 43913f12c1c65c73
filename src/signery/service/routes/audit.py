"""``GET /v1/audit`` (admin): recent audit entries and a check of the whole chain."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from sqlalchemy import select

from ...errors import TamperedError
from ..audit import verify_chain
from ..deps import AdminCaller, State
from ..schemas import AuditEntryPublic, AuditPublic, ErrorPublic
from ..storage import AuditRow

router = APIRouter(prefix="/audit", tags=["audit"])

MAX_AUDIT_PAGE = 1000  # entries per response; page with ?after=


@router.get("", response_model=AuditPublic)
def get_audit(
    state: State,
    caller: AdminCaller,
    after: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_AUDIT_PAGE)] = 100,
) -> AuditPublic:
    try:
        report = verify_chain(state.db)
        valid, rows, head, error = True, report.rows, report.head_hash, None
    except TamperedError as err:
        valid, rows, head, error = False, 0, None, ErrorPublic(reason=err.reason.value, message=err.message)
    with state.db.read_session() as session:
        stmt = select(AuditRow).where(AuditRow.seq > after).order_by(AuditRow.seq).limit(limit)
        entries = [
            AuditEntryPublic(
                seq=r.seq,
                time=r.time,
                caller=r.caller,
                action=r.action,
                key_name=r.key_name,
                key_version=r.key_version,
                digest=r.digest,
                result=r.result,
                detail=r.detail,
                prev_hash=r.prev_hash,
                hash=r.hash,
            )
            for r in session.scalars(stmt)
        ]
    return AuditPublic(entries=entries, chain_valid=valid, chain_rows=rows, head_hash=head, error=error)
