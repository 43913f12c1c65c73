"""``signery plugins list|check|remove``: what the plugin host has installed, and whether it still passes."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ._common import EXIT_REFUSED, emit_json, group, handle_errors, json_option
from .install import _PLUGINS_DIR, _POLICY, _TRUST_STORE, load_host_policy, load_host_trust


@group()
def plugins() -> None:
    """Installed plugins: list them, re-check them against the current policy, remove them.

    \b
    Examples:
      signery plugins list --plugins-dir plugins
      signery plugins check --plugins-dir plugins --json
      signery plugins remove hello --plugins-dir plugins
    """


@plugins.command("list")
@_PLUGINS_DIR
@json_option
@handle_errors
def list_(plugins_dir: Path, as_json: bool) -> None:
    """List installed plugins with their verification status and signer.

    \b
    Examples:
      signery plugins list --plugins-dir plugins --json
    """
    from ..host.checks import list_installed
    from ..trust import short_key_id

    records = list_installed(plugins_dir)
    if as_json:
        data = {"plugins": [r.to_dict(with_files=False) for r in records]}
        emit_json(data, message=f"{len(records)} plugin(s) installed in {plugins_dir}")
        return
    if not records:
        click.echo(f"no plugins installed in {plugins_dir}")
        return
    for r in records:
        if r.status == "verified":
            how = f"verified    {r.signer_key_name} ({short_key_id(r.signer_key_id or '')})"
        else:
            how = f"unverified  ({r.reason})"
        click.echo(f"{r.name:<32} {r.version:<14} {r.kind:<10} {how}")


@plugins.command()
@_PLUGINS_DIR
@_POLICY
@_TRUST_STORE
@json_option
@handle_errors
def check(plugins_dir: Path, policy_file: Path | None, trust_store: Path | None, as_json: bool) -> None:
    """Re-verify every installed plugin against its install record and the current policy.

    Exit 1 naming each plugin that no longer passes (changed files, a key no longer trusted, an unverified
    plugin once verification is forced...).

    \b
    Examples:
      signery plugins check --plugins-dir plugins
      signery plugins check --plugins-dir plugins --policy /etc/signery/policy.toml --json
    """
    from ..host.checks import check_installed

    policy = load_host_policy(policy_file)
    outcomes = check_installed(plugins_dir, policy=policy, trust=load_host_trust(trust_store))
    failing = [o for o in outcomes if not o.ok]
    if as_json:
        if failing:
            message = f"{len(failing)} plugin(s) no longer pass: {', '.join(o.name for o in failing)}"
            reason = failing[0].reason.value if failing[0].reason else "policy-violation"
        else:
            message, reason = f"{len(outcomes)} plugin(s) pass", None
        emit_json({"plugins": [o.to_dict() for o in outcomes]}, ok=not failing, reason=reason, message=message)
    else:
        for o in outcomes:
            mark = "ok  " if o.ok else "FAIL"
            line = f"{mark} {o.name} {o.version} ({o.status})"
            if not o.ok:
                line += f": {o.reason.value if o.reason else '?'}: {o.message}"
            click.echo(line, err=not o.ok)
        if not outcomes:
            click.echo(f"no plugins installed in {plugins_dir}")
    if failing:
        if not as_json:
            click.echo(f"{len(failing)} plugin(s) no longer pass: {', '.join(o.name for o in failing)}", err=True)
        sys.exit(EXIT_REFUSED)


@plugins.command()
@click.argument("name")
@_PLUGINS_DIR
@json_option
@handle_errors
def remove(name: str, plugins_dir: Path, as_json: bool) -> None:
    """Uninstall plugin NAME (its files and its record).

    \b
    Examples:
      signery plugins remove hello --plugins-dir plugins
    """
    from ..host.checks import remove_plugin

    record = remove_plugin(plugins_dir, name)
    if as_json:
        message = f"removed {record.name} {record.version}"
        emit_json({"removed": record.to_dict(with_files=False)}, message=message)
    else:
        click.echo(f"removed {record.name} {record.version}")
