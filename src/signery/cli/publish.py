"""``signery publish`` and ``signery search``: the publisher's and the browser's side of the registry."""

from __future__ import annotations

import os
from pathlib import Path

import click

from ..errors import UsageError
from ._common import Progress, command, emit_json, existing_file_option, handle_errors, json_option

TOKEN_ENV = "SIGNERY_REGISTRY_TOKEN"  # noqa: S105 - the name of the variable, not a secret
_registry_option = click.option(
    "--registry", required=True, envvar="SIGNERY_REGISTRY", help="Registry URL, e.g. http://127.0.0.1:8080"
)


def signatures_beside(package: Path) -> list[Path]:
    """The detached signature files ``signery verify PACKAGE`` finds beside it (``PACKAGE.signery.json``,
    ``PACKAGE.sig`` or else ``PACKAGE.asc``...): for each format :func:`~signery.formats.detect_formats` reports
    that detaches, the file its own discovery (``Format.detached_beside``) names, in detection order."""
    from ..formats import detect_formats, get_format

    found: list[Path] = []
    for name in detect_formats(package):
        fmt = get_format(name)
        beside = fmt.detached_beside(package) if fmt.detaches else None
        if beside is not None and beside not in found:
            found.append(beside)
    return found


@command()
@click.argument("package", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@existing_file_option(
    "--signature",
    "signatures",
    multiple=True,
    help="Detached signature to publish with it (PKG.signery.json, PKG.sig, PKG.asc); repeatable. Default: the "
    "ones beside PACKAGE that 'signery verify PACKAGE' finds.",
)
@_registry_option
@click.option("--name", default=None, help="Package name, when the package has no manifest.")
@click.option("--version", "version", default=None, help="Semantic version, when the package has no manifest.")
@click.option(
    "--allow-unverifiable",
    is_flag=True,
    help="Publish even though no host the package is served to (Kibana, Mattermost, Dify, signery) could verify "
    "its signatures, e.g. an EdDSA-only signature on a Mattermost plugin. Refused (policy-violation) otherwise.",
)
@json_option
@handle_errors
def publish(
    package: Path,
    signatures: tuple[Path, ...],
    registry: str,
    name: str | None,
    version: str | None,
    allow_unverifiable: bool,
    as_json: bool,
) -> None:
    """Publish PACKAGE (and its detached signatures) to a registry. Token from $SIGNERY_REGISTRY_TOKEN.

    \b
    Name and version come from the package (Dify manifest.yaml, Elastic manifest.yml, Mattermost plugin.json)
    or from --name/--version. Without --signature, the detached signatures beside PACKAGE are published with it,
    found as 'signery verify' finds them (PACKAGE.signery.json, PACKAGE.sig or PACKAGE.asc). Re-publishing the
    same bytes with another --signature adds that signature; different bytes for a published version are
    refused (versions are immutable). A package is served on every host protocol of the registry that installs
    its format; one whose signatures that host could not verify (Mattermost reads RSA only; Kibana the key it is
    configured with) is refused with policy-violation unless --allow-unverifiable.

    \b
    Examples:
      signery publish hello-1.2.0.signed.difypkg --registry http://127.0.0.1:8080
      signery publish demo-0.1.0.tar.gz --signature demo-0.1.0.tar.gz.sig --registry http://127.0.0.1:8080
      signery publish tool.zip --name acme-tool --version 1.0.0 --registry http://127.0.0.1:8080
    """
    from ..registry.client import publish_package

    token = os.environ.get(TOKEN_ENV)
    if not token:
        raise UsageError(f"set {TOKEN_ENV} to a publisher token", subject=TOKEN_ENV)
    sigs = list(signatures) if signatures else signatures_beside(package)
    total = sum(p.stat().st_size for p in (package, *sigs))
    bar = Progress(total, f"publish {package.name}")
    try:
        index, created = publish_package(
            registry,
            package,
            token=token,
            signatures=sigs,
            name=name,
            version=version,
            progress=bar.advance,
            allow_unverifiable=allow_unverifiable,
        )
    finally:
        bar.close()
    what = "published" if created else "unchanged" if not sigs else "signatures added to"
    message = f"{what} {index.ref} sha256:{index.sha256} ({len(index.signatures)} signature(s))"
    if as_json:
        emit_json({"created": created, **index.to_dict()}, message=message)
        return
    click.echo(message)


@command()
@click.argument("query", default="")
@_registry_option
@json_option
@handle_errors
def search(query: str, registry: str, as_json: bool) -> None:
    """List packages whose name contains QUERY: name, latest version, whether it carries a signature.

    \b
    Examples:
      signery search --registry http://127.0.0.1:8080             # every package
      signery search acme --registry http://127.0.0.1:8080 --json
    """
    from ..registry.client import search_packages

    results = search_packages(registry, query)
    if as_json:
        emit_json({"packages": [p.to_dict() for p in results]}, message=f"{len(results)} package(s) found")
        return
    if not results:
        click.echo("no packages found", err=True)
    for p in results:
        click.echo(f"{p.name:<40} {p.latest or '-':<16} {'signed' if p.signed else 'unsigned'}")
