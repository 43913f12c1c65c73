"""``signery mirror``: carry packages and their signatures into air-gapped sites in one file."""

from __future__ import annotations

import os
from pathlib import Path

import click

from ..errors import UsageError
from ._common import Progress, emit_json, group, handle_errors, json_option
from .publish import TOKEN_ENV


@group()
def mirror() -> None:
    """Export packages with all their signatures to a bundle, and import bundles into a registry.

    \b
    Examples:
      signery mirror export hello@1.2.0 demo --registry http://registry.example.org --out bundle.tar
      signery mirror import bundle.tar --registry http://127.0.0.1:8080
      signery install hello@1.2.0 --from bundle.tar --plugins-dir plugins     # no registry needed
    """


def _parse_ref(ref: str) -> tuple[str, str | None]:
    name, _, version = ref.partition("@")
    return name, version or None


@mirror.command("export")
@click.argument("refs", nargs=-1, required=True)
@click.option("--registry", required=True, envvar="SIGNERY_REGISTRY", help="Registry URL.")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="Bundle to write (tar).")
@json_option
@handle_errors
def export(refs: tuple[str, ...], registry: str, out: Path, as_json: bool) -> None:
    """Write NAME[@VERSION]... (latest when no version), their signatures and an index into one tar.

    \b
    Examples:
      signery mirror export hello@1.2.0 demo --registry http://registry.example.org --out bundle.tar
    """
    from ..registry.client import RegistryClient, download_size
    from ..registry.mirror import export_indexes, resolve_refs

    with RegistryClient(registry) as client:
        indexes = resolve_refs(client, [_parse_ref(r) for r in refs])
        bar = Progress(sum(download_size(ix) for ix in indexes), f"export {out.name}")
        try:
            exported = export_indexes(client, indexes, out, progress=bar.advance)
        finally:
            bar.close()
    if as_json:
        data = {"bundle": str(out), "packages": [ix.to_dict() for ix in exported]}
        emit_json(data, message=f"exported {len(exported)} package(s) to {out}")
        return
    for ix in exported:
        click.echo(f"exported {ix.ref} ({len(ix.signatures)} signature(s))")
    click.echo(f"wrote {out}", err=True)


@mirror.command("import")
@click.argument("bundle", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--registry", required=True, envvar="SIGNERY_REGISTRY", help="Registry URL.")
@json_option
@handle_errors
def import_(bundle: Path, registry: str, as_json: bool) -> None:
    """Publish every package in BUNDLE, signatures intact, to a registry (token from $SIGNERY_REGISTRY_TOKEN).

    \b
    Examples:
      signery mirror import bundle.tar --registry http://127.0.0.1:8080
    """
    from ..registry.client import RegistryClient
    from ..registry.mirror import Bundle, import_packages

    token = os.environ.get(TOKEN_ENV)
    if not token:
        raise UsageError(f"set {TOKEN_ENV} to a publisher token", subject=TOKEN_ENV)
    with Bundle(bundle) as b, RegistryClient(registry, token=token) as client:
        bar = Progress(b.size(), f"import {bundle.name}")
        try:
            results = import_packages(b, client, progress=bar.advance)
        finally:
            bar.close()
    if as_json:
        created = sum(1 for _ix, c in results if c)
        data = {"packages": [{"created": c, **ix.to_dict()} for ix, c in results]}
        emit_json(data, message=f"imported {created} of {len(results)} package(s) from {bundle}")
        return
    for ix, created in results:
        click.echo(f"{'imported' if created else 'already present'} {ix.ref} ({len(ix.signatures)} signature(s))")
