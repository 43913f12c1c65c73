"""``signery registry``: run the package registry and manage its publisher tokens."""

from __future__ import annotations

from pathlib import Path

import click

from ._common import emit_json, group, handle_errors, json_option

_data_option = click.option(
    "--data",
    "data_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("registry-data"),
    show_default=True,
    help="Blob files (and the SQLite database, unless --database-url).",
)
_db_option = click.option(
    "--database-url", default=None, envvar="SIGNERY_REGISTRY_DATABASE_URL", help="e.g. postgresql://user@host/db"
)


@group()
def registry() -> None:
    """Serve packages and their signatures (the registry is never trusted: clients verify).

    \b
    Examples:
      signery registry serve --data registry-data --port 8080
      signery registry token create --name ci --scope 'acme-*'
      signery registry token revoke ci
    """


@registry.command()
@_data_option
@_db_option
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535))
@click.option("--require-signatures", is_flag=True, help="Refuse packages published without a detached signature.")
@click.option(
    "--max-upload-size",
    default=512 << 20,
    show_default=True,
    type=click.IntRange(1),
    help="Largest package accepted, in bytes.",
)
@handle_errors
def serve(
    data_dir: Path, database_url: str | None, host: str, port: int, require_signatures: bool, max_upload_size: int
) -> None:
    """Run the registry (FastAPI + uvicorn). API docs at /docs.

    \b
    Examples:
      signery registry serve --data registry-data --port 8080
      signery registry serve --database-url postgresql://registry@db/registry --require-signatures
    """
    import uvicorn

    from ..registry.app import create_app
    from ..registry.settings import RegistrySettings

    settings = RegistrySettings(
        data_dir=data_dir,
        database_url=database_url,
        require_signatures=require_signatures,
        max_upload_size=max_upload_size,
    )
    app = create_app(settings)
    click.echo(f"signery registry on http://{host}:{port} (data in {data_dir})", err=True)
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)


@registry.group()
def token() -> None:
    """Publisher tokens (shown once; stored hashed).

    \b
    Examples:
      signery registry token create --name ci --scope 'acme-*'
      signery registry token list --json
      signery registry token revoke ci
    """


@token.command("create")
@_data_option
@_db_option
@click.option("--name", required=True, help="Who the token is for (unique).")
@click.option("--scope", "scopes", multiple=True, help="Package-name pattern it may publish (repeatable; default *).")
@json_option
@handle_errors
def token_create(data_dir: Path, database_url: str | None, name: str, scopes: tuple[str, ...], as_json: bool) -> None:
    """Create a token and print it once.

    \b
    Examples:
      signery registry token create --name ci
      signery registry token create --name acme --scope 'acme-*' --scope 'acme.*' --json
    """
    from ..registry.settings import RegistrySettings
    from ..registry.store import RegistryStore

    store = RegistryStore(RegistrySettings(data_dir=data_dir, database_url=database_url))
    try:
        info, text = store.create_token(name, scopes=scopes)
    finally:
        store.close()
    if as_json:
        emit_json({"token": text, **info.to_dict()}, message=f"token {info.name!r} created; shown once, store it now")
        return
    click.echo(text)
    click.echo(f"token {info.name!r} (scopes: {', '.join(info.scopes)}); shown once, store it now", err=True)


@token.command("list")
@_data_option
@_db_option
@json_option
@handle_errors
def token_list(data_dir: Path, database_url: str | None, as_json: bool) -> None:
    """List tokens (never their secrets).

    \b
    Examples:
      signery registry token list --data registry-data
    """
    from ..registry.settings import RegistrySettings
    from ..registry.store import RegistryStore

    store = RegistryStore(RegistrySettings(data_dir=data_dir, database_url=database_url))
    try:
        tokens = store.list_tokens()
    finally:
        store.close()
    if as_json:
        emit_json({"tokens": [t.to_dict() for t in tokens]}, message=f"{len(tokens)} token(s)")
        return
    for t in tokens:
        state = f"revoked {t.revoked_at:%Y-%m-%d}" if t.revoked_at else "active"
        click.echo(f"{t.id}  {t.name:<24} {state:<18} {', '.join(t.scopes)}")


@token.command("revoke")
@_data_option
@_db_option
@click.argument("name")
@json_option
@handle_errors
def token_revoke(data_dir: Path, database_url: str | None, name: str, as_json: bool) -> None:
    """Revoke a token by name or id; it stops working at once.

    \b
    Examples:
      signery registry token revoke ci
    """
    from ..registry.settings import RegistrySettings
    from ..registry.store import RegistryStore

    store = RegistryStore(RegistrySettings(data_dir=data_dir, database_url=database_url))
    try:
        info = store.revoke_token(name)
    finally:
        store.close()
    if as_json:
        emit_json(info.to_dict(), message=f"revoked token {info.name!r}")
    else:
        click.echo(f"revoked token {info.name!r}")
