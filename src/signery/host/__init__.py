"""The plugin host: install packages under a signature policy, list them, re-check them, remove them.

:mod:`~signery.host.install` installs (verify, decide, stage, extract, commit with rollback);
:mod:`~signery.host.checks` lists, re-checks and removes; :mod:`~signery.host.records` keeps what was installed;
:mod:`~signery.host.tarball` is the one reader of ``.tar.gz`` bundles.

Example::

    policy = load_policy(home / "policy.toml", env={})
    record = install_package(Path("plugin.difypkg"), plugins_dir=Path("plugins"), policy=policy, trust=trust)
    assert record.status == "verified"
"""

from __future__ import annotations

from .checks import CheckOutcome, check_installed, list_installed, remove_plugin
from .install import DEFAULT_HOST_LIMITS, HostLimits, install_package, verify_package
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
