"""The 401/403 matrix for every route, API key expiry and revocation, and scope patterns."""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime, timedelta

import pytest
from service_kit import Service
from sqlalchemy import select

from signery.errors import UsageError
from signery.service.apikeys import Caller, check_scope, create_api_key
from signery.service.storage import AuditRow

DIGEST = base64.b64encode(hashlib.sha256(b"x").digest()).decode()
SIG = base64.b64encode(b"\0" * 64).decode()

# (method, path template) -> (request body, who may call: "public" | "admin" | "read" | "sign" | "verify")
ROUTES: dict[tuple[str, str], tuple[dict[str, object] | None, str]] = {
    ("GET", "/healthz"): (None, "public"),
    ("POST", "/v1/keys"): ({"name": "new", "type": "ed25519"}, "admin"),
    ("GET", "/v1/keys"): (None, "read"),
    ("GET", "/v1/keys/{name}"): (None, "public"),
    ("POST", "/v1/keys/{name}/rotate"): (None, "admin"),
    ("POST", "/v1/keys/{name}/config"): ({"min_sign_version": 1}, "admin"),
    ("DELETE", "/v1/keys/{name}"): (None, "admin"),
    ("POST", "/v1/keys/{name}/sign"): ({"digest": DIGEST}, "sign"),
    ("POST", "/v1/keys/{name}/verify"): ({"digest": DIGEST, "signature": SIG}, "verify"),
    ("POST", "/v1/keys/{name}/openpgp-sign"): ({"digest": DIGEST}, "sign"),
    ("POST", "/v1/bootstrap"): ({"keys": [{"name": "boot", "type": "ed25519"}]}, "admin"),
    ("GET", "/v1/audit"): (None, "admin"),
    ("POST", "/v1/api-keys"): ({"name": "another", "scopes": ["read"]}, "admin"),
    ("GET", "/v1/api-keys"): (None, "admin"),
    ("POST", "/v1/api-keys/{name}/revoke"): (None, "admin"),
}

ALLOWED = {
    "admin": {"public", "admin", "read", "sign", "verify"},
    "read": {"public", "read", "verify"},
    "signer": {"public", "read", "sign", "verify"},  # sign:k* matches key "k1"
    "other-signer": {"public", "read"},  # sign:z* does not match "k1"; listing is allowed, using k1 is not
}


def test_route_table_covers_every_route(sqlite_service: Service) -> None:
    paths = sqlite_service.app.openapi()["paths"]
    # /balena/* speaks balenaSign's protocol (keys named in the body); its 401/403/404 matrix is
    # tests/service/test_balena_replay.py's.
    found = {(method.upper(), path) for path, ops in paths.items() for method in ops if not path.startswith("/balena/")}
    assert found == set(ROUTES), "a route was added or removed: extend the 401/403 matrix"


def _call(svc: Service, method: str, path: str, body: object, token: str | None) -> int:
    path = path.replace("{name}", "k1" if "api-keys" not in path else "victim")
    headers = {"X-API-Key": token} if token is not None else {}
    return svc.client.request(method, path, json=body, headers=headers).status_code


@pytest.mark.parametrize("caller", ["none", "garbage", "wrong-secret", "expired", "revoked"])
def test_unauthenticated_callers_get_401_everywhere(sqlite_service: Service, caller: str) -> None:
    svc = sqlite_service
    with svc.db.session() as s:
        create_api_key(s, name="victim", scopes=["read"], caller="test")
    svc.client.post("/v1/keys", json={"name": "k1", "type": "ed25519"}, headers=svc.h(svc.admin))
    token: str | None = {
        "none": None,
        "garbage": "not-a-key",
        "wrong-secret": svc.admin[:-4] + "AAAA",
    }.get(caller)
    if caller == "expired":
        with svc.db.session() as s:
            _, token = create_api_key(
                s, name="old", scopes=["admin"], expires_at=datetime.now(UTC) - timedelta(seconds=1), caller="t"
            )
    if caller == "revoked":
        token = svc.token("gone", "admin")
        assert svc.client.get("/v1/api-keys", headers=svc.h(token)).status_code == 200
        assert svc.client.post("/v1/api-keys/gone/revoke", headers=svc.h(svc.admin)).status_code == 200
    for (method, path), (body, who) in ROUTES.items():
        status = _call(svc, method, path, body, token)
        if who == "public":
            assert status < 400, (method, path, status)
        else:
            assert status == 401, (method, path, status)


@pytest.mark.parametrize("role", ["read", "signer", "other-signer", "admin"])
def test_scopes_give_403_exactly_where_they_should(sqlite_service: Service, role: str) -> None:
    svc = sqlite_service
    with svc.db.session() as s:
        create_api_key(s, name="victim", scopes=["read"], caller="test")
    svc.client.post("/v1/keys", json={"name": "k1", "type": "ed25519"}, headers=svc.h(svc.admin))
    svc.client.post("/v1/keys", json={"name": "pgp1", "type": "openpgp-ed25519"}, headers=svc.h(svc.admin))
    scopes = {"read": ["read"], "signer": ["sign:k*"], "other-signer": ["sign:z*"], "admin": ["admin"]}[role]
    token = svc.token(f"role-{role}", *scopes)
    for (method, path), (body, who) in ROUTES.items():
        status = _call(svc, method, path, body, token)
        if who in ALLOWED[role]:
            assert status not in (401, 403), (role, method, path, status)
        else:
            assert status == 403, (role, method, path, status)
    with svc.db.session() as s:
        denials = list(s.scalars(select(AuditRow).where(AuditRow.result == "denied:403")))
    expected = sum(1 for (_, who) in ROUTES.values() if who not in ALLOWED[role])
    assert len(denials) == expected
    assert all(d.caller == f"role-{role}" for d in denials)


def test_scope_parsing() -> None:
    for good in ("admin", "read", "sign:*", "sign:release-?", "sign:a.b_c-d"):
        assert check_scope(good) == good
    for bad in ("root", "sign:", "sign:../x", "sign:a/b", "write", "sign:a b", "admin "):
        with pytest.raises(UsageError):
            check_scope(bad)
    c = Caller(api_key_id="x", name="ci", scopes=("sign:release-*",))
    assert c.may_sign("release-1") and not c.may_sign("debug-1") and not c.may_sign("release")
    assert not c.is_admin and c.may_verify("release-2") and not c.may_verify("other")


def test_api_key_management_over_http(sqlite_service: Service) -> None:
    svc, h = sqlite_service, sqlite_service.h(sqlite_service.admin)
    r = svc.client.post("/v1/api-keys", json={"name": "ci", "scopes": ["sign:rel-*"], "expires_at": "30d"}, headers=h)
    assert r.status_code == 201
    token = r.json()["token"]
    assert token.startswith("sgy_") and r.json()["expires_at"]
    listed = svc.client.get("/v1/api-keys", headers=h).json()["api_keys"]
    assert {k["name"] for k in listed} == {"admin", "ci"}
    assert all("token" not in k and "secret_hash" not in k for k in listed)
    again = svc.client.post("/v1/api-keys", json={"name": "ci", "scopes": ["read"]}, headers=h)
    assert again.status_code == 409 and again.json()["error"]["reason"] == "policy-violation"  # as for a key name
    bad_scope = svc.client.post("/v1/api-keys", json={"name": "x", "scopes": ["root"]}, headers=h)
    assert bad_scope.status_code == 400
    assert svc.client.post("/v1/api-keys/nobody/revoke", headers=h).status_code == 404
    with svc.db.session() as s:
        actions = [r.action for r in s.scalars(select(AuditRow))]
    assert actions.count("api-key.create") == 2
