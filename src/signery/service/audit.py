"""The append-only, hash-chained audit log.

Every row's hash covers its own fields and the previous row's hash, so removing, reordering or editing a row breaks
every hash after it. Appenders lock the single ``audit_head`` row (``SELECT ... FOR UPDATE`` on PostgreSQL, the
database write lock on SQLite) in the same transaction as the work being audited, so several server processes on
one database still write one chain, and work whose audit row cannot be written is rolled back with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import queue
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import Connection, select
from sqlalchemy.orm import Session

from ..errors import EnvironmentFailure, Reason, SigneryError, TamperedError
from .storage import AuditHeadRow, AuditRow, Database

GENESIS = "0" * 64
MAX_DETAIL_CHARS = 500  # details are for people; an attacker-chosen string must not bloat the log
VERIFY_BATCH = 5_000  # rows fetched at a time while checking the chain
MAX_AUDIT_BATCH = 1_000  # rows per group commit; bounds one transaction
AUDIT_WRITE_TIMEOUT = 30.0  # seconds a request waits for its audit row before it fails


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


_quote = json.encoder.encode_basestring_ascii  # exactly what json.dumps(..., ensure_ascii=True) does to a str


def _q(value: str | None) -> str:
    return "null" if value is None else _quote(value)


def row_hash(*, seq: int, time: str, event: AuditEvent, prev_hash: str) -> str:
    """SHA-256 of the row's canonical JSON: ``json.dumps`` of its fields with sorted keys, no spaces, ASCII only.

    Spelled out rather than built through ``json.dumps`` (an encoder per call), because it runs once per row; the
    unit tests hold it to the ``json.dumps`` form byte for byte.
    """
    version = "null" if event.key_version is None else int.__repr__(event.key_version)
    canonical = (
        f'{{"action":{_q(event.action)},"caller":{_q(event.caller)},"detail":{_q(event.detail)},'
        f'"digest":{_q(event.digest)},"key":{_q(event.key_name)},"prev":{_q(prev_hash)},'
        f'"result":{_q(event.result)},"seq":{int.__repr__(seq)},"time":{_q(time)},"version":{version}}}'
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


# Driver-level SQL, written once per parameter style: this runs for every batch of signatures, and SQLAlchemy's
# statement machinery costs more than the database work. PostgreSQL locks the head row; SQLite's BEGIN IMMEDIATE
# already holds the database.
_HEAD_SQL = "SELECT seq, hash FROM audit_head WHERE id = 1"
_INSERT_SQL = (
    "INSERT INTO audit_log (seq, time, caller, action, key_name, key_version, digest, result, detail, prev_hash, hash)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_MOVE_SQL = "UPDATE audit_head SET seq = ?, hash = ? WHERE id = 1"
_SQLITE_SQL = (_HEAD_SQL, _INSERT_SQL, _MOVE_SQL)
_PG_SQL = (_HEAD_SQL + " FOR UPDATE", _INSERT_SQL.replace("?", "%s"), _MOVE_SQL.replace("?", "%s"))


def append(session: Session | Connection, events: list[AuditEvent]) -> int:
    """Append ``events`` to the chain inside ``session``'s transaction; returns the last sequence number."""
    conn = session.connection() if isinstance(session, Session) else session
    postgres = conn.dialect.name == "postgresql"
    head_sql, insert_sql, move_sql = _PG_SQL if postgres else _SQLITE_SQL
    head = conn.exec_driver_sql(head_sql).one_or_none()
    if head is None:
        raise EnvironmentFailure("the audit chain head is missing; the database was not initialised")
    seq, prev = int(head[0]), str(head[1])
    rows: list[tuple[object, ...]] = []
    stamp = utc_now()
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
        digest = row_hash(seq=seq, time=stamp, event=event, prev_hash=prev)
        rows.append(
            (
                seq,
                stamp,
                event.caller,
                event.action,
                event.key_name,
                event.key_version,
                event.digest,
                event.result,
                event.detail,
                prev,
                digest,
            )
        )
        prev = digest
    if rows:
        conn.exec_driver_sql(insert_sql, rows)
        conn.exec_driver_sql(move_sql, (seq, prev))
    return seq


_TIMED_OUT = "the audit log could not be written in time; the request was not completed"


@dataclass
class _Pending:
    """Events to write together, and who waits for them: one thread (``append``), or every coroutine of one event
    loop that appended during one turn of that loop (``append_async``)."""

    events: list[AuditEvent]
    done: threading.Event | None = None
    error: SigneryError | None = None
    loop: asyncio.AbstractEventLoop | None = None
    futures: list[asyncio.Future[None]] = field(default_factory=list)
    timer: asyncio.TimerHandle | None = None


def _settle(pending: _Pending, error: SigneryError | None) -> None:
    """On the pending's loop: wake its coroutines."""
    if pending.timer is not None:
        pending.timer.cancel()
    for future in pending.futures:
        if future.done():
            continue
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)


def _time_out(pending: _Pending) -> None:
    _settle(pending, EnvironmentFailure(_TIMED_OUT))


def _finish(batch: list[_Pending], error: SigneryError | None) -> None:
    """From the writer thread: wake every waiter of ``batch`` (one wake-up per event loop turn's worth)."""
    for p in batch:
        p.error = error
        if p.done is not None:
            p.done.set()
        if p.loop is not None:
            with contextlib.suppress(RuntimeError):  # a loop closed meanwhile has nobody left waiting
                p.loop.call_soon_threadsafe(_settle, p, error)


class AuditWriter:
    """Group commit: concurrent requests' audit rows are appended in one transaction, and each request waits for it.

    A signature is returned only after its audit row is committed (or the request fails with 503). Batching keeps
    the lock on the chain head to one short transaction per batch instead of one per signature, which is what lets
    several workers and processes share one chain at thousands of signatures a second. On the event loop, the
    requests that append during one turn of the loop are handed to the writer thread together, and woken together:
    two thread hand-offs per batch rather than per request.
    """

    def __init__(self, db: Database) -> None:
        self._db = db
        self._queue: queue.SimpleQueue[_Pending] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._gathering: dict[asyncio.AbstractEventLoop, _Pending] = {}  # touched only from each loop's thread

    def append(self, events: list[AuditEvent]) -> None:
        """Append ``events`` durably; raises ``EnvironmentFailure`` if they could not be written."""
        if not events:
            return
        pending = _Pending(events, done=threading.Event())
        self._start()
        self._queue.put(pending)
        assert pending.done is not None
        if not pending.done.wait(AUDIT_WRITE_TIMEOUT):
            raise EnvironmentFailure(_TIMED_OUT)
        if pending.error is not None:
            raise pending.error

    async def append_async(self, events: list[AuditEvent]) -> None:
        """:meth:`append` for the event loop: waits without holding a thread."""
        if not events:
            return
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        pending = self._gathering.get(loop)
        if pending is None:
            pending = self._gathering[loop] = _Pending([], loop=loop)
            loop.call_soon(self._submit, loop)
        pending.events += events
        pending.futures.append(future)
        await future

    def _submit(self, loop: asyncio.AbstractEventLoop) -> None:
        pending = self._gathering.pop(loop)
        pending.timer = loop.call_later(AUDIT_WRITE_TIMEOUT, _time_out, pending)
        self._start()
        self._queue.put(pending)

    def _start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="signery-audit-writer", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            # No linger: whatever queued while the previous transaction ran shares the next one.
            batch = [self._queue.get()]
            rows = len(batch[0].events)
            while rows < MAX_AUDIT_BATCH:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
                rows += len(batch[-1].events)
            error: SigneryError | None = None
            try:
                with self._db.connection() as conn:
                    append(conn, [e for p in batch for e in p.events])
            except SigneryError as exc:
                error = exc
            except Exception as exc:  # the writer thread must survive anything, and report it to the waiters
                error = EnvironmentFailure(f"the audit log could not be written: {type(exc).__name__}")
            _finish(batch, error)


def record(db: Database, event: AuditEvent) -> None:
    """Append one event in its own transaction (denials: the request's own transaction is being rolled back)."""
    with db.session() as session:
        append(session, [event])


@dataclass(frozen=True)
class ChainReport:
    rows: int
    head_hash: str


def _check_rows(rows: Iterable[AuditRow], *, prev: str, expected_seq: int) -> tuple[str, int]:
    """Check ``rows`` (in order) follow a row whose hash is ``prev`` and whose successor is ``expected_seq``:
    contiguous sequence numbers, every link, every hash. Returns the last hash and the next expected number.

    Raises:
        TamperedError: the first row (``subject`` is its sequence number) that does not check.
    """
    for row in rows:
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
        prev, expected_seq = row.hash, row.seq + 1
    return prev, expected_seq


def _check_head(head: AuditHeadRow, *, last: int, prev: str) -> None:
    if head.seq != last or head.hash != prev:
        raise TamperedError(
            f"the audit head says row {head.seq} but the chain ends at row {last}",
            reason=Reason.TAMPERED,
            subject=str(last),
        )


def _head(session: Session) -> AuditHeadRow:
    head = session.get(AuditHeadRow, 1)
    if head is None:
        raise EnvironmentFailure("the audit chain head is missing; the database was not initialised")
    return head


def verify_chain(db: Database) -> ChainReport:
    """Check the whole chain end to end: contiguous sequence numbers, every link, every hash, and the head row.

    Reads one consistent snapshot and takes no lock: the service keeps appending meanwhile.

    Raises:
        TamperedError: the first row (``subject`` is its sequence number) that does not check.
    """
    prev, expected_seq = GENESIS, 1
    with db.snapshot_session() as session:
        head = _head(session)
        while True:
            stmt = select(AuditRow).where(AuditRow.seq >= expected_seq).order_by(AuditRow.seq).limit(VERIFY_BATCH)
            batch = list(session.scalars(stmt))
            if not batch:
                break
            prev, expected_seq = _check_rows(batch, prev=prev, expected_seq=expected_seq)
        _check_head(head, last=expected_seq - 1, prev=prev)
    return ChainReport(rows=expected_seq - 1, head_hash=prev)


@dataclass(frozen=True)
class AuditPage:
    """Up to ``limit`` rows after a sequence number, and how far they were checked.

    ``error`` is ``None`` when the rows check: each hash, each link, no gap, the first row's link to the stored row
    before it, and (when the page reaches the end of the log) the head. That proves the page consistent with what
    is stored around it, not the rows before it: :func:`verify_chain` checks the whole chain.
    """

    rows: list[AuditRow]
    head_seq: int
    head_hash: str
    error: TamperedError | None


def read_page(db: Database, *, after: int, limit: int) -> AuditPage:
    """The rows numbered above ``after`` (at most ``limit``), checked as described in :class:`AuditPage`."""
    with db.snapshot_session() as session:
        head = _head(session)
        rows = list(session.scalars(select(AuditRow).where(AuditRow.seq > after).order_by(AuditRow.seq).limit(limit)))
        error: TamperedError | None = None
        try:
            if after >= head.seq:
                if rows:  # rows beyond the head: appended without moving it, or the head was rolled back
                    _check_head(head, last=rows[-1].seq, prev=rows[-1].hash)
            else:
                before = GENESIS if after == 0 else session.scalar(select(AuditRow.hash).where(AuditRow.seq == after))
                if before is None:
                    raise TamperedError(f"audit row {after} is missing", subject=str(after))
                prev, expected_seq = _check_rows(rows, prev=before, expected_seq=after + 1)
                if expected_seq - 1 >= head.seq or len(rows) < limit:  # this page is the end of the log
                    _check_head(head, last=expected_seq - 1, prev=prev)
        except TamperedError as err:
            error = err
    return AuditPage(rows=rows, head_seq=head.seq, head_hash=head.hash, error=error)
