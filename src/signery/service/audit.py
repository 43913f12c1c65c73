"""The append-only, hash-chained audit log.

Every row's hash covers its own fields and the previous row's hash, so removing, reordering or editing a row breaks
every hash after it. Appenders lock the single ``audit_head`` row (``SELECT ... FOR UPDATE`` on PostgreSQL, the
database write lock on SQLite) in the same transaction as the work being audited, so several server processes on
one database still write one chain, and work whose audit row cannot be written is rolled back with it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..errors import EnvironmentFailure, Reason, TamperedError
from .storage import AuditHeadRow, AuditRow, Database

GENESIS = "0" * 64
MAX_DETAIL_CHARS = 500  # details are for people; an attacker-chosen string must not bloat the log
VERIFY_BATCH = 5_000  # rows fetched at a time while checking the chain


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class AuditEvent:
    caller: str
    action: str
    result: str
    key_name: str | None = None
    key_version: int | None = None
    digest: str | None = None
    detail: str | None = None


def row_hash(*, seq: int, time: str, event: AuditEvent, prev_hash: str) -> str:
    doc = {
        "seq": seq,
        "time": time,
        "caller": event.caller,
        "action": event.action,
        "key": event.key_name,
        "version": event.key_version,
        "digest": event.digest,
        "result": event.result,
        "detail": event.detail,
        "prev": prev_hash,
    }
    canonical = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()
    return hashlib.sha256(canonical).hexdigest()


def append(session: Session, events: list[AuditEvent]) -> int:
    """Append ``events`` to the chain inside ``session``'s transaction; returns the last sequence number."""
    head = session.execute(select(AuditHeadRow).where(AuditHeadRow.id == 1).with_for_update()).scalar_one_or_none()
    if head is None:
        raise EnvironmentFailure("the audit chain head is missing; the database was not initialised")
    seq, prev = head.seq, head.hash
    for raw in events:
        event = AuditEvent(
            caller=raw.caller[:64],
            action=raw.action[:64],
            result=raw.result[:64],
            key_name=raw.key_name[:64] if raw.key_name else raw.key_name,
            key_version=raw.key_version,
            digest=raw.digest[:160] if raw.digest else raw.digest,
            detail=raw.detail[:MAX_DETAIL_CHARS] if raw.detail else raw.detail,
        )
        seq += 1
        time = utc_now()
        digest = row_hash(seq=seq, time=time, event=event, prev_hash=prev)
        session.add(
            AuditRow(
                seq=seq,
                time=time,
                caller=event.caller,
                action=event.action,
                key_name=event.key_name,
                key_version=event.key_version,
                digest=event.digest,
                result=event.result,
                detail=event.detail,
                prev_hash=prev,
                hash=digest,
            )
        )
        prev = digest
    head.seq, head.hash = seq, prev
    session.flush()
    return seq


def record(db: Database, event: AuditEvent) -> None:
    """Append one event in its own transaction (denials: the request's own transaction is being rolled back)."""
    with db.session() as session:
        append(session, [event])


@dataclass(frozen=True)
class ChainReport:
    rows: int
    head_hash: str


def verify_chain(db: Database) -> ChainReport:
    """Check the whole chain: contiguous sequence numbers, every link, every hash, and the head row.

    Raises:
        TamperedError: the first row (``subject`` is its sequence number) that does not check.
    """
    prev, expected_seq = GENESIS, 1
    with db.session() as session:
        head = session.get(AuditHeadRow, 1)
        if head is None:
            raise EnvironmentFailure("the audit chain head is missing; the database was not initialised")
        last = 0
        while True:
            rows = session.scalars(
                select(AuditRow).where(AuditRow.seq > last).order_by(AuditRow.seq).limit(VERIFY_BATCH)
            )
            batch = list(rows)
            if not batch:
                break
            for row in batch:
                where = str(row.seq)
                if row.seq != expected_seq:
                    raise TamperedError(f"audit row {expected_seq} is missing (next is {row.seq})", subject=where)
                if row.prev_hash != prev:
                    raise TamperedError(f"audit row {row.seq} does not link to row {row.seq - 1}", subject=where)
                event = AuditEvent(
                    caller=row.caller,
                    action=row.action,
                    result=row.result,
                    key_name=row.key_name,
                    key_version=row.key_version,
                    digest=row.digest,
                    detail=row.detail,
                )
                if row_hash(seq=row.seq, time=row.time, event=event, prev_hash=prev) != row.hash:
                    raise TamperedError(f"audit row {row.seq} was altered (its hash does not match)", subject=where)
                prev, expected_seq, last = row.hash, row.seq + 1, row.seq
        if head.seq != last or head.hash != prev:
            raise TamperedError(
                f"the audit head says row {head.seq} but the chain ends at row {last}",
                reason=Reason.TAMPERED,
                subject=str(last),
            )
    return ChainReport(rows=last, head_hash=prev)
