"""``signery registry``: run the package registry and manage its publisher tokens."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import click

from ._common import emit_json, existing_file_option, group, handle_errors, json_option

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
      signery registry trust-index http://127.0.0.1:8080 index.public.pem
    """


def _fingerprints(files: tuple[Path, ...]) -> frozenset[str]:
    """The fingerprints (primary and signing subkeys) of armored or binary OpenPGP public key files."""
    from ..openpgp import inspect_certificate

    out: set[str] = set()
    for path in files:
        info = inspect_certificate(path.read_bytes(), source=str(path))
        out.add(info.fingerprint.lower())
        out.update(f.lower() for f in info.signing_subkeys)
    return frozenset(out)


def _duration(text: str) -> timedelta:
    units = {"m": 60, "h": 3600, "d": 86400}
    if not text or text[-1] not in units or not text[:-1].isdigit() or int(text[:-1]) <= 0:
        raise click.BadParameter(f"{text!r}: a positive number with m, h or d (e.g. 7d)")
    return timedelta(seconds=int(text[:-1]) * units[text[-1]])


@registry.command()
@_data_option
@_db_option
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=click.IntRange(1, 65535))
@click.option("--require-signatures", is_flag=True, help="Refuse packages published without a detached signature.")
@click.option(
    "--max-upload-size",
    default=512 << 20,
    show_default=True,
    type=click.IntRange(1),
    help="Largest package accepted, in bytes.",
)
@click.option(
    "--protocol",
    "protocols",
    multiple=True,
    type=click.Choice(["elastic", "mattermost", "dify"]),
    help="Host protocol to serve (repeatable; default all): /elastic (Kibana Fleet), /mattermost, /dify.",
)
@existing_file_option(
    "--kibana-key",
    "kibana_keys",
    multiple=True,
    help="The OpenPGP public key Kibana is configured with (xpack.fleet.packageVerification.gpgKeyPath): its "
    "signature is served first in .zip.sig, and Elastic packages it did not sign are refused at publish.",
)
@existing_file_option(
    "--mattermost-key",
    "mattermost_keys",
    multiple=True,
    help="An OpenPGP public key in Mattermost's SignaturePublicKeyFiles: its signature is served first.",
)
@click.option("--public-url", default=None, help="The URL hosts reach the registry at (for Mattermost download_url).")
@click.option(
    "--index-key",
    default=None,
    envvar="SIGNERY_REGISTRY_INDEX_KEY",
    help="Key that signs the index at /api/index: a key file, remote:NAME or a pkcs11: URI (as signery sign --key).",
)
@click.option("--index-expiry", default="7d", show_default=True, help="How long a signed index is valid (m, h, d).")
@click.option(
    "--static-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Lay the immutable download paths out here for nginx to serve (see docs/registry.md).",
)
@click.option(
    "--workers",
    default=1,
    show_default=True,
    type=click.IntRange(1, 64),
    help="Worker processes sharing the port (SO_REUSEPORT); one per core. A signed index needs a single worker.",
)
@handle_errors
def serve(
    data_dir: Path,
    database_url: str | None,
    host: str,
    port: int,
    require_signatures: bool,
    max_upload_size: int,
    protocols: tuple[str, ...],
    kibana_keys: tuple[Path, ...],
    mattermost_keys: tuple[Path, ...],
    public_url: str | None,
    index_key: str | None,
    index_expiry: str,
    static_dir: Path | None,
    workers: int,
) -> None:
    """Run the registry (FastAPI + uvicorn). API docs at /docs.

    \b
    One store, served on signery's own API (/api) and on each host's protocol:
      /elastic     Kibana Fleet         xpack.fleet.registryUrl: http://HOST:8080/elastic
      /mattermost  Mattermost server    PluginSettings.MarketplaceURL: http://HOST:8080/mattermost
      /dify        Dify API             MARKETPLACE_API_URL=http://HOST:8080/dify

    \b
    Examples:
      signery registry serve --data registry-data --port 8080
      signery registry serve --database-url postgresql://registry@db/registry --require-signatures
      signery registry serve --kibana-key fleet.public.asc --index-key index.private.pem --index-expiry 1d
      signery registry serve --data registry-data --port 8080 --workers 4
    """
    from ..registry.runner import serve as run_registry
    from ..registry.settings import HOST_PROTOCOLS, RegistrySettings
    from ..service.runner import Listen

    settings = RegistrySettings(
        data_dir=data_dir,
        database_url=database_url,
        require_signatures=require_signatures,
        max_upload_size=max_upload_size,
        protocols=frozenset(protocols or HOST_PROTOCOLS),
        kibana_keys=_fingerprints(kibana_keys),
        mattermost_keys=_fingerprints(mattermost_keys),
        public_url=public_url,
        index_expiry=_duration(index_expiry),
        static_dir=static_dir,
    )
    from .. import load_signer

    run_registry(
        settings,
        listen=Listen(host=host, port=port),
        workers=workers,
        index_signer=load_signer(index_key, env=os.environ) if index_key else None,
        announce=lambda where: click.echo(f"signery registry on {where} (data in {data_dir})", err=True),
    )


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


@registry.command("trust-index")
@click.argument("url")
@click.argument("public_key", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@json_option
@handle_errors
def trust_index(url: str, public_key: Path, as_json: bool) -> None:
    """Trust PUBLIC_KEY (PEM) to sign the index of the registry at URL.

    From then on, 'signery install --registry URL' checks the registry's signed index first and refuses one that
    is older than the last seen (policy-violation), expired (expired-key), signed by another key (unknown-key),
    or that lists other bytes than those served (tampered). The state lives in $SIGNERY_HOME/registries/.

    \b
    Examples:
      signery registry trust-index http://127.0.0.1:8080 index.public.pem
    """
    from ..keys import key_id, load_public_key_file
    from ..registry.signed_index import RegistryTrust
    from ._common import signery_home

    key = load_public_key_file(public_key)
    state = RegistryTrust(signery_home(), url)
    state.trust(key)
    state.save()
    message = f"index key {key_id(key)[:16]} trusted for {state.url}"
    if as_json:
        emit_json({"url": state.url, "key_id": key_id(key), "last_version": state.last_version}, message=message)
    else:
        click.echo(message)
