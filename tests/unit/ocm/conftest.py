"""Shared OCM fixtures: keys and a three-level certificate chain (generated once per session)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from ocm_helpers import make_archive

from signery import x509ca
from signery.keys import generate_private_key


@pytest.fixture(scope="session")
def rsa_key() -> Any:
    return generate_private_key("rsa-2048")


@pytest.fixture(scope="session")
def other_rsa_key() -> Any:
    return generate_private_key("rsa-2048")


@pytest.fixture(scope="session")
def pki() -> dict[str, x509ca.CertifiedKey]:
    """root -> intermediate -> leaves: good, expired, no code signing; plus an unrelated root and its leaf."""
    root = x509ca.create_root("/CN=ACME Root CA/O=ACME")
    inter = x509ca.create_intermediate(root, "/CN=ACME Signing CA/O=ACME")
    now = datetime.now(UTC)
    other_root = x509ca.create_root("/CN=Evil Root CA")
    return {
        "root": root,
        "intermediate": inter,
        "leaf": x509ca.issue(inter, "/CN=acme.org/O=ACME"),
        "expired": x509ca.issue(
            inter, "/CN=old.acme.org/O=ACME", not_before=now - timedelta(days=30), not_after=now - timedelta(days=1)
        ),
        "no_code_signing": x509ca.issue(inter, "/CN=web.acme.org/O=ACME", code_signing=False),
        "other_root": other_root,
        "other_leaf": x509ca.issue(other_root, "/CN=acme.org/O=ACME"),
    }


@pytest.fixture()
def archive(tmp_path: Path) -> Path:
    return make_archive(tmp_path / "ca")
