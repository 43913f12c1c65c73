"""``GET /v1/audit``: pages (``after``/``limit``) checked against their neighbours, ``?verify=full`` end to end."""

from __future__ import annotations

from typing import Any

from service_kit import Service
from sqlalchemy import text, update

from signery.service.storage import AuditRow


def _audit(svc: Service, **params: object) -> Any:
    r = svc.client.get("/v1/audit", params=params, headers=svc.h(svc.admin))
    assert r.status_code == 200, r.text
    return r.json()


def _fill(svc: Service, n: int) -> None:
    for i in range(n):
        r = svc.client.post("/v1/keys", json={"name": f"k{i}", "type": "ed25519"}, headers=svc.h(svc.admin))
        assert r.status_code == 201


def test_pages_walk_the_log_and_say_what_they_checked(service: Service) -> None:
    _fill(service, 7)  # the admin key's creation + 7 key creations: 8 rows
    seen: list[int] = []
    after: int | None = 0
    while after is not None:
        body = _audit(service, after=after, limit=3)
        rows = [e["seq"] for e in body["entries"]]
        assert body["verification"] == {
            "scope": "page",
            "valid": True,
            "from_seq": rows[0],
            "to_seq": rows[-1],
            "error": None,
        }
        seen += rows
        after = body["next_after"]
    assert seen == list(range(1, 9))
    assert body["head_seq"] == 8 and body["entries"][-1]["hash"] == body["head_hash"]
    empty = _audit(service, after=8)
    assert empty["entries"] == [] and empty["next_after"] is None and empty["verification"]["valid"] is True
    full = _audit(service, limit=1, verify="full")
    assert full["verification"] == {"scope": "full", "valid": True, "from_seq": 1, "to_seq": 8, "error": None}
    assert len(full["entries"]) == 1 and full["next_after"] == 1


def test_limits_are_bounded(sqlite_service: Service) -> None:
    svc = sqlite_service
    for params in ({"limit": 0}, {"limit": 1001}, {"after": -1}, {"verify": "some"}):
        assert svc.client.get("/v1/audit", params=params, headers=svc.h(svc.admin)).status_code == 422


def test_a_page_does_not_vouch_for_rows_before_it_but_full_does(service: Service) -> None:
    _fill(service, 5)  # rows 1..6
    with service.db.session() as s:
        s.execute(update(AuditRow).where(AuditRow.seq == 2).values(caller="mallory"))
    later = _audit(service, after=3)
    assert later["verification"]["valid"] is True and later["verification"]["from_seq"] == 4
    touching = _audit(service, after=1, limit=2)
    assert touching["verification"]["valid"] is False
    assert "row 2 was altered" in touching["verification"]["error"]["message"]
    full = _audit(service, after=3, verify="full")
    assert full["verification"]["scope"] == "full" and full["verification"]["valid"] is False
    assert "row 2" in full["verification"]["error"]["message"]


def test_a_page_checks_its_link_to_the_row_before_it_and_to_the_head(service: Service) -> None:
    _fill(service, 5)  # rows 1..6
    with service.db.session() as s:
        s.execute(update(AuditRow).where(AuditRow.seq == 3).values(hash="0" * 64))
    body = _audit(service, after=3, limit=2)  # rows 4, 5: row 4 no longer links to the stored row 3
    assert body["verification"]["valid"] is False and "row 4 does not link" in body["verification"]["error"]["message"]
    with service.db.session() as s:
        s.execute(text("DELETE FROM audit_log WHERE seq = 6"))
    body = _audit(service, after=4)  # row 5 is now the last row, but the head says 6
    assert body["verification"]["valid"] is False and "head says row 6" in body["verification"]["error"]["message"]
    with service.db.session() as s:
        s.execute(text("DELETE FROM audit_log WHERE seq = 2"))
    body = _audit(service, after=2)
    assert body["verification"]["valid"] is False and "row 2 is missing" in body["verification"]["error"]["message"]
