"""Property-based fuzzing of the whole OpenAPI document: whatever arrives, the service never answers 5xx."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from service_kit import make_service

from signery.service import MasterKey
from signery.service.audit import verify_chain

MAX_EXAMPLES = 20  # per operation; 15 operations, so the run stays well under a minute

# schemathesis parametrizes at collection time, so the app exists at import (in a private temporary directory).
_DIR = Path(tempfile.mkdtemp(prefix="signery-fuzz-"))
FUZZED = make_service(f"sqlite:///{_DIR / 'service.db'}", MasterKey(os.urandom(32)), rate_per_second=1e6, burst=10**6)
FUZZED.client.post("/v1/keys", json={"name": "k", "type": "ed25519"}, headers=FUZZED.h(FUZZED.admin))
schema = schemathesis.openapi.from_asgi("/openapi.json", FUZZED.app)


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_errors(case: Any) -> None:
    # Half the examples as admin (reaching the handlers), half with whatever the generator sends.
    headers = {"X-API-Key": FUZZED.admin} if hash(repr(case.body)) % 2 == 0 else None
    case.call_and_validate(headers=headers, checks=[not_a_server_error])


def test_fuzzing_left_the_audit_chain_intact() -> None:
    assert verify_chain(FUZZED.db).rows >= 1
