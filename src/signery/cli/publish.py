"""``signery publish`` and ``signery search``: the publisher's and the browser's side of the registry."""

from __future__ import annotations

import os
from pathlib import Path

import click

from ..errors import UsageError
from ._common import emit_json, handle_errors, json_option

TOKEN_ENV = "SIGNERY_REGISTRY_TOKEN"  # noqa: S105 - the name of the variable, not a secret
_registry_option = click.option(
    "--registry", required=True, envvar="SIGNERY_REGISTRY", help="Registry URL, e.g. http://127.0.0.1:8080"
)


@click.command()
@click.argument("package", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--signature",
    "signatures",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Detached signature to publish with it (PKG.signery.json, PKG.sig, PKG.asc); repeatable.",
)
@_registry_option
@click.option("--name", default=None, help="Package name, when the package has no manifest.")
@click.option("--version", "version", default=None, help="Semantic version, when the package has no manifest.")
@json_option
@handle_errors
def publish(
    package: Path,
    signatures: tuple[Path, ...],
    registry: str,
    name: str | None,
    version: str | None,
    as_json: bool,
) -> None:
    """Publish PACKAGE (and its detached signatures) to a registry. Token from $SIGNERY_REGISTRY_TOKEN.

    \b
    Name and version come from the package (Dify manifest.yaml, Elastic manifest.yml, Mattermost plugin.json)
    or from --name/--version. Re-publishing the same bytes with another --signature adds that signature;
    different bytes for a published version are refused (versions are immutable).
    """
    from ..registry.client import publish_package

    token = os.environ.get(TOKEN_ENV)
    if not token:
        raise UsageError(f"set {TOKEN_ENV} to a publisher token", subject=TOKEN_ENV)
    index, created = publish_package(registry, package, token=token, signatures=signatures, name=name, version=version)
    if as_json:
        emit_json({"ok": True, "created": created, **index.to_dict()})
        return
    what = "published" if created else "unchanged" if not signatures else "signatures added to"
    click.echo(f"{what} {index.ref} sha256:{index.sha256} ({len(index.signatures)} signature(s))")


@click.command()
@click.argument("query", default="")
@_registry_option
@json_option
@handle_errors
def search(query: str, registry: str, as_json: bool) -> None:
    """List packages whose name contains QUERY: name, latest version, whether it carries a signature."""
    from ..registry.client import search_packages

    results = search_packages(registry, query)
    if as_json:
        emit_json({"ok": True, "packages": [p.to_dict() for p in results]})
        return
    if not results:
        click.echo("no packages found", err=True)
    for p in results:
        click.echo(f"{p.name:<40} {p.latest or '-':<16} {'signed' if p.signed else 'unsigned'}")
