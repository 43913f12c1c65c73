"""Request dependencies: the database, the key store, and the authenticated, rate-limited caller."""

from __future__ import annotations

import hashlib
import time
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader
from starlette.concurrency import run_in_threadpool

from .apikeys import Caller, authenticate
from .errors import DeniedError, RateLimitedError, denial
from .state import ServiceState

AUTH_CACHE_SECONDS = 1.0  # a revocation made by another process takes effect within this; this process: at once
MAX_AUTH_CACHE = 10_000  # distinct valid tokens remembered per process

api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="an API key: sgy_<id>_<secret>")


def state_of(request: Request) -> ServiceState:
    state = request.app.state.service
    assert isinstance(state, ServiceState)
    return state


async def get_state(request: Request) -> ServiceState:
    return state_of(request)


State = Annotated[ServiceState, Depends(get_state)]


def action_of(method: str, path: str) -> str:
    """The audit ``action`` of a denied request: its method and path."""
    return f"{method} {path}"[:64]


def _action(request: Request) -> str:
    return action_of(request.method, request.url.path)


def _client(request: Request) -> str:
    return request.client.host if request.client else "-"


async def get_caller(request: Request, state: State, token: Annotated[str | None, Depends(api_key_header)]) -> Caller:
    """The caller behind ``X-API-Key``; 401 without a valid one, 429 when over its rate."""
    return await authenticate_request(state, token, client=_client(request), action=_action(request))


async def authenticate_request(state: ServiceState, token: str | None, *, client: str, action: str) -> Caller:
    """Authenticate ``token`` (cached for :data:`AUTH_CACHE_SECONDS`) and take a rate-limit token for its caller.

    Raises:
        DeniedError: 401, no valid API key (the client address is rate limited instead).
        RateLimitedError: 429, over the caller's rate.
    """
    if not token:
        _limit_anonymous(state, client)
        raise DeniedError("an X-API-Key header is required", status=401, caller="-", action=action)
    cache_key = hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()
    now = time.monotonic()
    with state.auth_lock:
        hit = state.auth_cache.get(cache_key)
    caller = hit[0] if hit is not None and now - hit[1] < AUTH_CACHE_SECONDS else None
    if caller is None:
        caller = await run_in_threadpool(_lookup, state, token)
        if caller is None:
            _limit_anonymous(state, client)
            raise DeniedError(
                "the API key is not valid (unknown, expired or revoked)", status=401, caller="-", action=action
            )
        with state.auth_lock:
            if len(state.auth_cache) >= MAX_AUTH_CACHE:
                state.auth_cache.clear()
            state.auth_cache[cache_key] = (caller, now)
    wait = state.limiter.take_local(caller.api_key_id)
    if wait is None:  # this process's lease is spent: lease more from the database, off the event loop
        wait = await run_in_threadpool(state.limiter.take, caller.api_key_id)
    if wait:
        raise RateLimitedError(f"rate limit exceeded; retry in {wait} s", retry_after=wait)
    return caller


def _lookup(state: ServiceState, token: str) -> Caller | None:
    with state.db.read_session() as session:
        return authenticate(session, token)


def _limit_anonymous(state: ServiceState, client: str) -> None:
    wait = state.anon_limiter.take(f"anon:{client}")
    if wait:
        raise RateLimitedError(f"rate limit exceeded; retry in {wait} s", retry_after=wait)


CurrentCaller = Annotated[Caller, Depends(get_caller)]


def deny(request: Request, caller: Caller, *, needs: str, key_name: str | None = None) -> DeniedError:
    return denial(caller, needs=needs, action=_action(request), key_name=key_name)


async def require_admin(request: Request, caller: CurrentCaller) -> Caller:
    if not caller.is_admin:
        raise deny(request, caller, needs="admin")
    return caller


AdminCaller = Annotated[Caller, Depends(require_admin)]
