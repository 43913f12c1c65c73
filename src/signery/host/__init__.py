"""The plugin host: install packages under a signature policy, list them, re-check them, remove them.

Example::

    policy = load_policy(home / "policy.toml", env={})
    record = install_package(Path("plugin.difypkg"), plugins_dir=Path("plugins"), policy=policy, trust=trust)
    assert record.status == "verified"
"""

from __future__ import annotations

from .installer import (
    DEFAULT_HOST_LIMITS,
    CheckOutcome,
    HostLimits,
    check_installed,
    install_package,
    list_installed,
    remove_plugin,
    verify_package,
)
from .records import InstallRecord

__all__ = [
    "DEFAULT_HOST_LIMITS",
    "CheckOutcome",
    "HostLimits",
    "InstallRecord",
    "check_installed",
    "install_package",
    "list_installed",
    "remove_plugin",
    "verify_package",
]
