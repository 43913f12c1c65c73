"""``GET /v1/audit`` (admin): a page of audit entries, checked; or with ``?verify=full``, the whole chain too."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query

from ...errors import TamperedError
from ..audit import read_page, verify_chain
from ..deps import AdminCaller, State
from ..schemas import AuditEntryPublic, AuditPublic, AuditVerification, ErrorPublic

router = APIRouter(prefix="/audit", tags=["audit"])

MAX_AUDIT_PAGE = 1000  # entries per response; page with ?after=


@router.get("", response_model=AuditPublic)
def get_audit(
    state: State,
    caller: AdminCaller,
    after: Annotated[int, Query(ge=0, le=2**31 - 1, description="entries numbered above this")] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_AUDIT_PAGE)] = 100,
    verify: Annotated[
        Literal["page", "full"], Query(description="full: check the whole chain (reads every row)")
    ] = "page",
) -> AuditPublic:
    page = read_page(state.db, after=after, limit=limit)
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
        for r in page.rows
    ]
    last = entries[-1].seq if entries else None
    if verify == "full":
        try:
            report = verify_chain(state.db)
            checked = AuditVerification(
                scope="full", valid=True, from_seq=1 if report.rows else None, to_seq=report.rows or None
            )
        except TamperedError as err:
            checked = AuditVerification(scope="full", valid=False, from_seq=1, error=_error(err))
    elif page.error is not None:
        checked = AuditVerification(scope="page", valid=False, from_seq=after + 1, error=_error(page.error))
    else:
        checked = AuditVerification(scope="page", valid=True, from_seq=entries[0].seq if entries else None, to_seq=last)
    return AuditPublic(
        entries=entries,
        next_after=last if last is not None and last < page.head_seq else None,
        head_seq=page.head_seq,
        head_hash=page.head_hash,
        verification=checked,
    )


def _error(err: TamperedError) -> ErrorPublic:
    return ErrorPublic(reason=err.reason.value, message=err.message)
