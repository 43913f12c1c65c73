"""balenaSign's public material (GPG keys, certificates, RSA keys, PK/KEK/db lists) and its admin key creation and
bootstrap, on the ``/balena`` router of :mod:`signery.service.routes.balena`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from ...errors import UsageError
from ...keys import public_key_pem
from .. import balena
from ..balena_store import aliases, cert_list, key_name_for, lookup, stored_auth
from ..deps import AdminCaller, State
from ..keys import lifecycle
from ..keys.models import Key, KeySpec
from ..state import ServiceState
from ..storage import KeyRow
from .balena import (
    _ID,
    _LIST,
    LARGE_ROUTES,
    PREFIX,
    BalenaConfig,
    CertSignRequest,
    T,
    _b64,
    _read,
    cert_sign_document,
    gpg_sign_document,
    large_paths,
    reply_document,
    router,
    signing_key,
)

# ---- public material ------------------------------------------------------------------------------------------------


def _public(state: ServiceState, kind: str, alias: str) -> Key:
    def fn(session: Any) -> Key:
        return lifecycle.get(session, lookup(session, kind, alias).key_name)

    return _read(state, fn)


@router.get("/gpg/keys")
async def gpg_keys(state: State) -> JSONResponse:
    found = await run_in_threadpool(_read, state, lambda s: aliases(s, "gpg"))
    return JSONResponse({"keys": [balena.fingerprint_text(a.alias) for a in found if len(a.alias) == 40]})


@router.get("/gpg/key/{key_id}")
async def gpg_key(key_id: _ID, state: State) -> JSONResponse:
    return await _published(state, "gpg", key_id, "openpgp_certificate", reply="key", not_a="an OpenPGP key")


async def _cert(state: ServiceState, cert_id: str) -> JSONResponse:
    return await _published(state, "x509", cert_id, "certificate_pem", reply="cert", not_a="a certificate")


async def _published(state: ServiceState, kind: str, alias: str, attr: str, *, reply: str, not_a: str) -> JSONResponse:
    """``{reply: ...}``: the public ``attr`` (a PEM or an OpenPGP certificate) of the signing version of the ``kind``
    key ``alias`` names; a usage error when that key has none (it is ``not_a`` ...)."""
    key = await run_in_threadpool(_public, state, kind, alias)
    value = getattr(balena.signing_version(key), attr)
    if value is None:
        raise UsageError(f"{alias} is not {not_a}", subject=alias)
    return JSONResponse({reply: value})


@router.get("/kmod/cert/{cert_id}")
async def kmod_cert(cert_id: _ID, state: State) -> JSONResponse:
    return await _cert(state, cert_id)


@router.get("/cert/{cert_id}")
async def get_cert(cert_id: _ID, state: State) -> JSONResponse:
    return await _cert(state, cert_id)


@router.get("/rsa/keys")
async def rsa_keys(state: State) -> JSONResponse:
    found = await run_in_threadpool(_read, state, lambda s: aliases(s, "rsa"))
    return JSONResponse({"keys": [a.alias for a in found]})


@router.get("/rsa/key/{key_id}")
async def rsa_key(key_id: _ID, state: State) -> JSONResponse:
    key = await run_in_threadpool(_public, state, "rsa", key_id)
    return JSONResponse({"key": public_key_pem(balena.signing_version(key).public_key).decode()})


async def _list_material(state: ServiceState, variable_key: str, ids_text: str) -> JSONResponse:
    from cryptography.hazmat.primitives import serialization

    ids = cert_list(ids_text)
    variable = balena.AUTH_VARIABLES[variable_key]

    def fn(session: Any) -> tuple[Any, list[bytes]]:
        material = balena.list_certificates(session, ids)  # 404 for an unknown id
        stored = stored_auth(session, variable, ids)
        return stored, [c.public_bytes(serialization.Encoding.DER) for c in material.certificates]

    stored, ders = await run_in_threadpool(_read, state, fn)
    if stored is None:
        from ...errors import NotFoundError, Reason

        raise NotFoundError(
            f"{variable} for {','.join(ids)} has not been signed yet (POST /secureboot/{variable_key} or /bootstrap)",
            reason=Reason.UNKNOWN_KEY,
            subject=",".join(ids),
        )
    return JSONResponse({variable_key: _b64(stored.auth), "esl": _b64(stored.esl), "der": [_b64(d) for d in ders]})


@router.get("/secureboot/pk/{cert_ids}")
async def get_pk(cert_ids: _LIST, state: State) -> JSONResponse:
    return await _list_material(state, "pk", cert_ids)


@router.get("/secureboot/kek/{cert_ids}")
async def get_kek(cert_ids: _LIST, state: State) -> JSONResponse:
    return await _list_material(state, "kek", cert_ids)


@router.get("/secureboot/db/{cert_ids}")
async def get_db(cert_ids: _LIST, state: State) -> JSONResponse:
    return await _list_material(state, "db", cert_ids)


# ---- key creation (admin) -------------------------------------------------------------------------------------------


class GpgKeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name_real: str = Field(min_length=1, max_length=100)
    name_email: str = Field(min_length=3, max_length=100)
    name_comment: str | None = Field(default=None, max_length=100)
    key_length: int | None = Field(default=None, ge=2048, le=4096)


@router.post("/gpg/key")
async def gpg_key_create(body: GpgKeyCreate, state: State, caller: AdminCaller) -> JSONResponse:
    """A new RSA OpenPGP key (signery makes RSA-3072 whatever ``key_length`` says) -> ``{fingerprint}``."""
    uid = balena.gpg_uid(body.name_real, body.name_email, body.name_comment)
    spec = KeySpec(name=balena.new_gpg_name(), type="openpgp-rsa-3072", uid=uid)

    def then(session: Any, key: Key) -> str:
        return balena.alias_key(session, key, "gpg", caller.name)

    fpr = await run_in_threadpool(_create_as, state, spec, caller.name, then)
    return JSONResponse({"fingerprint": fpr})


def _create_as(state: ServiceState, spec: KeySpec, caller: str, then: Callable[[Any, Key], T]) -> T:
    with state.db.read_session() as session:
        exists = session.get(KeyRow, spec.name) is not None
    privates = {} if exists else {spec.name: lifecycle.generate_for(spec)}
    with state.db.session() as session:
        keys, _created = lifecycle.bootstrap(session, [spec], master=state.master, caller=caller, privates=privates)
        result = then(session, keys[0])
    state.keys.forget(spec.name)
    return result


class CertCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    cert_id: str = Field(min_length=1, max_length=100)
    subject: str = Field(min_length=1, max_length=1024)
    key_length: int | None = None
    days: int | None = Field(default=None, ge=1, le=36525)


@router.post("/cert")
async def cert_create(body: CertCreate, state: State, caller: AdminCaller) -> JSONResponse:
    """A self-signed certificate and its RSA key under ``cert_id`` -> ``{cert}``; the same request again returns the
    same certificate, another one for an existing id is 409."""
    spec = balena.cert_spec(body.cert_id, subject=body.subject, key_length=body.key_length, days=body.days)

    def then(session: Any, key: Key) -> str:
        balena.alias_key(session, key, "x509", caller.name, alias=body.cert_id)
        pem = balena.signing_version(key).certificate_pem
        assert pem is not None
        return pem

    pem = await run_in_threadpool(_create_as, state, spec, caller.name, then)
    return JSONResponse({"cert": pem})


@router.post("/rsa/key")
async def rsa_key_create(state: State, caller: AdminCaller) -> JSONResponse:
    """A new RSA-2048 key -> ``{fingerprint}``, its opaque id."""

    def run() -> str:
        probe = KeySpec(name="balena-rsa-new", type="rsa-2048")
        private = lifecycle.generate_for(probe)
        rid = balena.rsa_id(private.public_key())
        spec = KeySpec(name=key_name_for("rsa", rid), type="rsa-2048")
        with state.db.session() as session:
            keys, _ = lifecycle.bootstrap(
                session, [spec], master=state.master, caller=caller.name, privates={spec.name: private}
            )
            return balena.alias_key(session, keys[0], "rsa", caller.name, alias=rid)

    return JSONResponse({"fingerprint": await run_in_threadpool(run)})


class GpgEntry(BaseModel):
    name_real: str = Field(min_length=1, max_length=100)
    name_email: str = Field(min_length=3, max_length=100)
    name_comment: str | None = Field(default=None, max_length=100)
    key_length: int | None = None


class CertEntry(BaseModel):
    cert_id: str = Field(min_length=1, max_length=100)
    subject: str = Field(min_length=1, max_length=1024)
    key_length: int | None = None
    days: int | None = Field(default=None, ge=1, le=36525)


class Certificates(BaseModel):
    model_config = ConfigDict(extra="forbid")
    pk: CertEntry | None = None
    kek: CertEntry | None = None
    db: CertEntry | None = None
    kmod: CertEntry | None = None


class BootstrapBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    gpg: GpgEntry | None = None
    rsa: dict[str, Any] | None = None
    hab: dict[str, Any] | None = None
    ahab: dict[str, Any] | None = None
    certificates: Certificates | None = None


@router.post("/bootstrap")
async def bootstrap(body: BootstrapBody, state: State, caller: AdminCaller) -> JSONResponse:
    """balenaSign's bootstrap on signery's idempotent one: everything missing is created (the same document again
    changes nothing); ``hab``/``ahab`` entries are answered as not supported."""
    certs: dict[str, tuple[str, KeySpec]] = {}
    for role in ("pk", "kek", "db", "kmod"):
        entry = getattr(body.certificates, role, None) if body.certificates else None
        if entry is not None:
            spec = balena.cert_spec(
                entry.cert_id, subject=entry.subject, key_length=entry.key_length, days=entry.days, role=role
            )
            certs[role] = (entry.cert_id, spec)
    gpg = body.gpg
    plan = balena.BalenaBootstrap(
        gpg_uid=balena.gpg_uid(gpg.name_real, gpg.name_email, gpg.name_comment) if gpg else None,
        rsa=body.rsa is not None,
        certificates=certs,
        unsupported=tuple(e for e in ("hab", "ahab") if getattr(body, e) is not None),
    )

    def run() -> dict[str, Any]:
        specs = balena.bootstrap_specs(plan)
        with state.db.read_session() as session:
            missing = [s for s in specs if session.get(KeyRow, s.name) is None]
        privates = {s.name: lifecycle.generate_for(s) for s in missing}
        with state.db.session() as session:
            reply, created = balena.run_bootstrap(
                session, plan, master=state.master, cache=state.keys, caller=caller.name, privates=privates
            )
        for name in created:
            state.keys.forget(name)
        return reply

    return JSONResponse(await run_in_threadpool(run))


__all__ = [
    "LARGE_ROUTES",
    "PREFIX",
    "BalenaConfig",
    "CertSignRequest",
    "cert_sign_document",
    "gpg_sign_document",
    "large_paths",
    "reply_document",
    "router",
    "signing_key",
]
