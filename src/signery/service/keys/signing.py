"""Signing and verification with the service's keys, and the sign request both front ends answer.

:func:`sign`, :func:`verify` and :func:`openpgp_sign` return their results with the audit rows to write; the caller
makes those durable before it hands out any signature. Only :func:`sign` and :func:`openpgp_sign` open a private key
(through :class:`~.cache.KeyCache`); :func:`verify` reads public keys only, so it cannot open one. Sealed and
token-backed versions take the same paths: :meth:`~.cache.KeyCache.signing_key` gives the signer of either.

:func:`sign_document` is the whole of ``POST /v1/keys/{name}/sign`` short of HTTP, shared by the FastAPI route and the
lean ASGI front (``service/fastpath.py``).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections.abc import Callable, Sequence
from typing import Literal, TypeVar

from starlette.concurrency import run_in_threadpool

from ..._internal.names import check_name
from ...errors import PolicyViolationError, Reason, SigneryError, UsageError, VerificationError
from ...keys import verify_signature
from ..apikeys import Caller
from ..audit import AuditEvent
from ..errors import denial
from ..schemas import SignInput, SignRequest, VerifyInput
from ..state import ServiceState
from .cache import KeyCache
from .models import DIGEST_SIZES, OPENPGP_TYPES, Key, OpenPGPSignature, Signature, SignItem, Verdict

T = TypeVar("T")
In = TypeVar("In", SignInput, VerifyInput)
_COMPACT = json.JSONEncoder(separators=(",", ":"))  # json.dumps with arguments builds an encoder on every call


def _event(
    caller: str, action: str, result: str, key: Key, item: SignItem, *, version: int | None, detail: str | None = None
) -> AuditEvent:
    digest = item.audit_digest()
    return AuditEvent(caller, action, result, key_name=key.name, key_version=version, digest=digest, detail=detail)


def sign(
    cache: KeyCache, key: Key, items: Sequence[SignItem], *, caller: str
) -> tuple[list[Signature | SigneryError], list[AuditEvent]]:
    """Sign each item; a failing item yields its error in place."""
    if key.type in OPENPGP_TYPES:
        raise UsageError(f"{key.name} is an OpenPGP key: use POST /v1/keys/{key.name}/openpgp-sign", subject=key.name)
    results: list[Signature | SigneryError] = []
    events: list[AuditEvent] = []
    for item in items:
        try:
            v = key.signing_version(item.version)
            signer = cache.signing_key(v)
            if item.digest is not None:
                sig = signer.sign_digest(
                    item.digest, hash_name=item.hash_algorithm or "sha256", rsa_padding=item.signature_algorithm
                )
            else:
                assert item.message is not None
                sig = signer.sign(item.message, hash_name=item.hash_algorithm, rsa_padding=item.signature_algorithm)
        except SigneryError as err:
            results.append(err)
            refused = f"refused:{err.reason.value}"
            events.append(_event(caller, "sign", refused, key, item, version=item.version, detail=err.message))
            continue
        results.append(Signature(signature=sig, key_id=v.key_id, version=v.version, algorithm=v.algorithm))
        events.append(_event(caller, "sign", "ok", key, item, version=v.version))
    return results, events


def verify(
    key: Key, items: Sequence[tuple[SignItem, bytes]], *, caller: str
) -> tuple[list[Verdict | SigneryError], list[AuditEvent]]:
    """Check each signature against the versions it may come from, with their public keys only."""
    if key.type in OPENPGP_TYPES:
        raise UsageError(f"{key.name} is an OpenPGP key: verify its signatures with sq or gpg", subject=key.name)
    results: list[Verdict | SigneryError] = []
    events: list[AuditEvent] = []
    for item, signature in items:
        try:
            candidates = key.verifying_versions(item.version)
        except PolicyViolationError as err:
            results.append(err)
            events.append(_event(caller, "verify", f"refused:{err.reason.value}", key, item, version=item.version))
            continue
        verdict = Verdict(valid=False, key_id=None, version=item.version, reason=Reason.BAD_SIGNATURE.value)
        data = item.digest if item.digest is not None else item.message
        assert data is not None
        for v in candidates:
            try:
                verify_signature(
                    v.public_key,
                    signature,
                    data,
                    hash_name=item.hash_algorithm,
                    rsa_padding=item.signature_algorithm,
                    prehashed=item.digest is not None,
                )
            except (VerificationError, UsageError):
                continue
            verdict = Verdict(valid=True, key_id=v.key_id, version=v.version)
            break
        results.append(verdict)
        events.append(
            _event(caller, "verify", "valid" if verdict.valid else "invalid", key, item, version=verdict.version)
        )
    return results, events


def openpgp_sign(
    cache: KeyCache, key: Key, *, digest: bytes, hash_algorithm: str, version: int | None, caller: str
) -> tuple[OpenPGPSignature, list[AuditEvent]]:
    """Sign a client-computed OpenPGP hash (of data + signature trailer); the client assembles the packet."""
    if key.type not in OPENPGP_TYPES:
        raise UsageError(f"{key.name} is not an OpenPGP key", subject=key.name)
    if hash_algorithm not in DIGEST_SIZES or len(digest) != DIGEST_SIZES[hash_algorithm]:
        raise UsageError(f"a {hash_algorithm} digest of the right length is required", subject=hash_algorithm)
    v = key.signing_version(version)
    from ... import openpgp

    assert v.openpgp_created is not None
    created = dt.datetime.fromtimestamp(v.openpgp_created, dt.UTC)
    pgp = openpgp.OpenPGPSigner(cache.signing_key(v), created=created)
    value = pgp.sign_hash(digest, hash_algorithm=hash_algorithm)
    event = AuditEvent(
        caller=caller,
        action="openpgp-sign",
        result="ok",
        key_name=key.name,
        key_version=v.version,
        digest=f"{hash_algorithm}:{digest.hex()}",
    )
    result = OpenPGPSignature(
        signature=value,
        fingerprint=pgp.fingerprint,
        pubkey_algorithm=pgp.pubkey_algorithm,
        key_created=v.openpgp_created,
        version=v.version,
    )
    return result, [event]


# ---- serving requests ------------------------------------------------------------------------------------------


def authorise(caller: Caller, name: str, *, to: Literal["sign", "verify"], action: str) -> None:
    """Refuse (403, audited as ``action``) a caller whose scopes do not let it ``to`` with the key ``name``."""
    check_name(name)
    if to == "sign" and not caller.may_sign(name):
        raise denial(caller, needs=f"sign:{name}", action=action, key_name=name)
    if to == "verify" and not caller.may_verify(name):
        raise denial(caller, needs=f"read or sign:{name}", action=action, key_name=name)


async def key_for(state: ServiceState, name: str, versions: Sequence[int | None]) -> Key:
    """``name`` as this process knows it, read again when stale or when it lacks a wanted version."""
    wanted = max((v for v in versions if v is not None), default=None)
    key = state.keys.fresh(name, version=wanted)
    if key is None:
        key = await run_in_threadpool(state.keys.load, state.db, name)
    return key


async def compute(key: Key, fn: Callable[[], T]) -> T:
    """Run ``fn`` on the event loop for Ed25519 and ECDSA (microseconds; about 0.3 ms in a local PKCS#11 token such
    as SoftHSM2, where a hop to a worker thread costs more than it saves), in a worker thread for RSA (milliseconds),
    sealed or in the token."""
    if any(v.algorithm.startswith("rsa") for v in key.versions.values()):
        return await run_in_threadpool(fn)
    return fn()


def batch_of(batch: Sequence[In] | None, single: Callable[[], In], *, single_given: bool) -> tuple[list[In], bool]:
    """The inputs of a sign or verify request and whether they came as a batch; ``single`` makes the one input of a
    request without a batch, and ``single_given`` says whether the request also has single-item fields."""
    if batch is None:
        return [single()], False
    if single_given:
        raise UsageError("give either batch or a single digest/message, not both")
    if not batch:
        raise UsageError("batch is empty")
    return list(batch), True


async def sign_document(state: ServiceState, name: str, body: SignRequest, caller: Caller, *, action: str) -> bytes:
    """The JSON response to a sign request, once every signature in it is audited.

    Raises:
        DeniedError: 403, ``caller`` may not sign with ``name``.
        SigneryError: a single (non-batch) item that could not be signed.
    """
    authorise(caller, name, to="sign", action=action)
    inputs, batch = batch_of(body.batch, lambda: body, single_given=body.digest is not None or body.message is not None)
    items: list[SignItem | SigneryError] = []
    for i in inputs:
        try:
            items.append(i.to_item())
        except SigneryError as err:
            if not batch:
                raise
            items.append(err)
    good = [i for i in items if isinstance(i, SignItem)]
    signed: list[Signature | SigneryError] = []
    if good:
        key = await key_for(state, name, [i.version for i in good])
        signed, events = await compute(key, lambda: sign(state.keys, key, good, caller=caller.name))
        await state.audit.append_async(events)
    results = iter(signed)
    # Built by hand rather than through the response model: this is the hot path, and the shape is SignResponse's.
    out: list[dict[str, object]] = []
    for item in items:
        res: Signature | SigneryError = item if isinstance(item, SigneryError) else next(results)
        if isinstance(res, SigneryError):
            if not batch:
                raise res
            out.append({"error": {"reason": res.reason.value, "message": res.message}})
        else:
            out.append(
                {
                    "signature": base64.b64encode(res.signature).decode(),
                    "key_id": res.key_id,
                    "version": res.version,
                    "algorithm": res.algorithm,
                }
            )
    return _COMPACT.encode(out[0] if not batch else {"batch_results": out}).encode()


__all__ = ["authorise", "batch_of", "compute", "key_for", "openpgp_sign", "sign", "sign_document", "verify"]
