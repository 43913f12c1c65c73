"""``signery server``: run the signing service, and administer its database (init, migrate, API keys, audit).

\b
  signery server init                               # master key (0600) + database + first admin API key
  signery server --port 8443 --workers 2            # serve (FastAPI + uvicorn)
  signery server --tls-cert server.crt --tls-key server.key   # HTTPS
  signery server api-key create --name ci --scope 'sign:release-*'
  signery server audit verify
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

import click

from ..errors import ConfigError, UsageError
from ._common import emit_json, group, handle_errors, json_option, signery_home

MASTER_KEY_ENV = "SIGNERY_MASTER_KEY"
DATABASE_URL_ENV = "SIGNERY_DATABASE_URL"
SWITCH_INTERVAL_ENV = "SIGNERY_GIL_SWITCH_INTERVAL"  # seconds; see signery.service.runner.DEFAULT_SWITCH_INTERVAL
PKCS11_MODULE_ENV = "SIGNERY_PKCS11_MODULE"
PKCS11_PIN_ENV = "SIGNERY_PKCS11_PIN"


def _database_url(option: str | None) -> str:
    if option:
        return option
    env = os.environ.get(DATABASE_URL_ENV)
    if env:
        return env
    return f"sqlite:///{signery_home() / 'service.db'}"


def _switch_interval() -> float:
    from ..service.runner import DEFAULT_SWITCH_INTERVAL

    text = os.environ.get(SWITCH_INTERVAL_ENV)
    if not text:
        return DEFAULT_SWITCH_INTERVAL
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value <= 1:
        raise ConfigError(f"{SWITCH_INTERVAL_ENV} must be a number of seconds in (0, 1]", subject=SWITCH_INTERVAL_ENV)
    return value


def _master_key_file(option: str | None) -> Path:
    return Path(option) if option else signery_home() / "master.key"


def _load_master(master_key_file: str | None) -> Any:
    from ..service import MasterKey

    if master_key_file is None and os.environ.get(MASTER_KEY_ENV):
        return MasterKey.from_text(os.environ[MASTER_KEY_ENV], source=MASTER_KEY_ENV)
    path = _master_key_file(master_key_file)
    if not path.exists():
        raise ConfigError(
            f"no master key: {path} does not exist and {MASTER_KEY_ENV} is not set",
            subject=str(path),
            hint="run 'signery server init' once, or pass --master-key-file",
        )
    return MasterKey.from_file(path)


def _token(uri: str | None, pin_file: str | None) -> Any:
    """The server's PKCS#11 token settings (module from $SIGNERY_PKCS11_MODULE, PIN from the file or
    $SIGNERY_PKCS11_PIN), or ``None`` without ``--pkcs11-token``."""
    if uri is None:
        if pin_file is not None:
            raise UsageError("--pkcs11-pin-file goes with --pkcs11-token", subject="--pkcs11-pin-file")
        return None
    from ..service.settings import TokenSettings

    return TokenSettings.from_options(
        uri,
        module=os.environ.get(PKCS11_MODULE_ENV) or None,
        pin_file=pin_file,
        pin_env=os.environ.get(PKCS11_PIN_ENV) or None,
    )


pkcs11_token_option = click.option(
    "--pkcs11-token",
    default=None,
    metavar="URI",
    help='A PKCS#11 token (RFC 7512 URI, e.g. pkcs11:token=signing) for keys created with "storage": "pkcs11"; '
    f"module from ${PKCS11_MODULE_ENV} or the URI's module-path.",
)
pkcs11_pin_option = click.option(
    "--pkcs11-pin-file",
    default=None,
    type=click.Path(dir_okay=False),
    help=f"The token's user PIN (first line); else ${PKCS11_PIN_ENV}, or pin-source=file:... in the URI.",
)
database_option = click.option(
    "--database-url",
    default=None,
    help=f"sqlite:///PATH or postgresql://... (default: ${DATABASE_URL_ENV}, else a SQLite file in $SIGNERY_HOME).",
)
master_option = click.option(
    "--master-key-file",
    default=None,
    type=click.Path(dir_okay=False),
    help=f"Default $SIGNERY_HOME/master.key; or set {MASTER_KEY_ENV} (base64).",
)


@group(invoke_without_command=True)
@database_option
@master_option
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8443, show_default=True, type=click.IntRange(1, 65535))
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64))
@click.option(
    "--tls-cert",
    default=None,
    type=click.Path(dir_okay=False),
    help="Serve HTTPS with this certificate (PEM, chain after the leaf); needs --tls-key.",
)
@click.option(
    "--tls-key",
    default=None,
    type=click.Path(dir_okay=False),
    help="The certificate's private key (PEM, unencrypted, mode 0600); needs --tls-cert.",
)
@click.option(
    "--rate-limit",
    default=200.0,
    show_default=True,
    type=click.FloatRange(min=0.001),
    help="Requests per second per API key (token bucket shared by every server on the database).",
)
@click.option("--burst", default=400, show_default=True, type=click.IntRange(1), help="Token bucket size.")
@click.option(
    "--log-level",
    default="warning",
    show_default=True,
    type=click.Choice(["critical", "error", "warning", "info", "debug"]),
)
@click.option(
    "--spool-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where /balena artifact routes keep artifacts while they are signed (default: beside the database).",
)
@click.option(
    "--max-artifact-mib",
    type=click.IntRange(1, 4096),
    help="The body limit of the /balena artifact routes, in MiB (default 384; every other route keeps 1 MiB).",
)
@pkcs11_token_option
@pkcs11_pin_option
@click.pass_context
@handle_errors
def server(
    ctx: click.Context,
    database_url: str | None,
    master_key_file: str | None,
    host: str,
    port: int,
    workers: int,
    tls_cert: str | None,
    tls_key: str | None,
    rate_limit: float,
    burst: int,
    log_level: str,
    spool_dir: Path | None,
    max_artifact_mib: int | None,
    pkcs11_token: str | None,
    pkcs11_pin_file: str | None,
) -> None:
    """Run the signing service (FastAPI + uvicorn), or administer it with a subcommand.

    The server refuses to start without a master key or on a database that is not migrated.
    TLS: --tls-cert/--tls-key, or a TLS-terminating proxy in front, or 127.0.0.1 only.

    \b
    Examples:
      signery server init                               # master key (0600) + database + first admin API key
      signery server --port 8443 --workers 2
      signery server --tls-cert server.crt --tls-key server.key   # HTTPS
      signery server --pkcs11-token 'pkcs11:token=signing' --pkcs11-pin-file pin   # with $SIGNERY_PKCS11_MODULE
    """
    # Everything this process creates (the SQLite database and its -wal/-shm journals, the master key) holds
    # sealed keys or secrets: private from birth, not chmod-ed after the fact.
    os.umask(0o077)
    if ctx.invoked_subcommand is not None:
        return
    from ..service import Settings
    from ..service.runner import Listen, serve
    from ..service.settings import tls_files

    settings = Settings(
        database_url=_database_url(database_url),
        master_key=_load_master(master_key_file),
        rate_per_second=rate_limit,
        burst=burst,
        pkcs11=_token(pkcs11_token, pkcs11_pin_file),
        spool_dir=spool_dir,
        **({"max_artifact_body_bytes": max_artifact_mib << 20} if max_artifact_mib else {}),
    )
    listen = Listen(host=host, port=port, tls=tls_files(tls_cert, tls_key), log_level=log_level)
    serve(
        settings,
        listen=listen,
        workers=workers,
        switch_interval=_switch_interval(),
        announce=lambda line: click.echo(f"signery server: {line}", err=True),
    )


@server.command()
@database_option
@master_option
@pkcs11_token_option
@pkcs11_pin_option
@handle_errors
def init(
    database_url: str | None, master_key_file: str | None, pkcs11_token: str | None, pkcs11_pin_file: str | None
) -> None:
    """Create the master key (mode 0600, if missing), the database, and the first admin API key (last line).

    With --pkcs11-token, first check that the token is there and the PIN logs in (nothing is created in it).

    \b
    Examples:
      signery server init
      signery server init --database-url postgresql://signery@db/signery --master-key-file /etc/signery/master.key
      signery server init --pkcs11-token pkcs11:token=signing --pkcs11-pin-file /run/secrets/pin
    """
    token = _token(pkcs11_token, pkcs11_pin_file)
    if token is not None:
        from ..service.keys.token import check_login

        check_login(token)
        click.echo(f"pkcs11 token: {token.display} (present, PIN accepted)")
    from .._fs import atomic_write_bytes
    from .._internal.db import sqlite_file
    from ..service import MasterKey
    from ..service.apikeys import first_admin_key
    from ..service.storage import Database

    url = _database_url(database_url)
    if master_key_file is None and os.environ.get(MASTER_KEY_ENV):
        MasterKey.from_text(os.environ[MASTER_KEY_ENV], source=MASTER_KEY_ENV)
        click.echo(f"master key: from {MASTER_KEY_ENV}")
    else:
        path = _master_key_file(master_key_file)
        if path.exists():
            MasterKey.from_file(path)
            click.echo(f"master key: {path} (exists, kept)")
        else:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            key = MasterKey(secrets.token_bytes(32))
            atomic_write_bytes(path, (key.to_text() + "\n").encode(), mode=0o600, overwrite=False)
            click.echo(f"master key: {path} (created; back it up: without it no key in the database can be used)")
    file = sqlite_file(url)
    if file is not None:
        file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    db = Database(url)
    revision = db.migrate()
    if file is not None:
        os.chmod(file, 0o600)  # it holds sealed keys and API key hashes
    click.echo(f"database: {db.display_url} (schema {revision})")
    with db.session() as session:
        token = first_admin_key(session)
    db.dispose()
    if token is None:
        raise UsageError(
            "the database has API keys already; no new admin key was made",
            subject=db.display_url,
            hint="use 'signery server api-key create --scope admin'",
        )
    click.echo("first admin API key (shown once; the server stores only its hash):")
    click.echo(token)


@server.command()
@database_option
@handle_errors
def migrate(database_url: str | None) -> None:
    """Upgrade the database schema to this version of signery (safe to run again).

    \b
    Examples:
      signery server migrate
      signery server migrate --database-url postgresql://signery@db/signery
    """
    from ..service.storage import Database

    db = Database(_database_url(database_url))
    before = db.current_revision()
    after = db.migrate()
    db.dispose()
    click.echo(f"{db.display_url}: schema {before or 'none'} -> {after}")


@server.group("api-key")
def api_key() -> None:
    """Create, list and revoke API keys (directly in the database).

    \b
    Examples:
      signery server api-key create --name ci --scope 'sign:release-*'
      signery server api-key list --json
      signery server api-key revoke ci
    """


@api_key.command("create")
@database_option
@click.option("--name", required=True, help="A name for the key's holder (^[A-Za-z0-9._-]{1,64}$).")
@click.option("--scope", "scopes", multiple=True, required=True, help="admin | read | sign:PATTERN (repeatable).")
@click.option("--expires", default=None, help="ISO time, or a duration such as 30d or 12h.")
@handle_errors
def api_key_create(database_url: str | None, name: str, scopes: tuple[str, ...], expires: str | None) -> None:
    """Create an API key; the key itself is printed as the last line, once.

    \b
    Examples:
      signery server api-key create --name ci --scope 'sign:release-*' --expires 90d
      signery server api-key create --name ops --scope admin
    """
    from ..service.apikeys import create_api_key, parse_expiry
    from ..service.storage import Database

    db = Database(_database_url(database_url))
    db.check_schema()
    with db.session() as session:
        info, token = create_api_key(
            session, name=name, scopes=list(scopes), expires_at=parse_expiry(expires), caller="cli"
        )
    db.dispose()
    click.echo(
        f"API key {info.name} ({info.id}): {' '.join(info.scopes)}"
        + (f", expires {info.expires_at}" if info.expires_at else "")
    )
    click.echo(token)


@api_key.command("list")
@database_option
@json_option
@handle_errors
def api_key_list(database_url: str | None, as_json: bool) -> None:
    """List API keys (names, scopes, expiry, revocation; never the keys).

    \b
    Examples:
      signery server api-key list --json
    """
    from ..service.apikeys import list_api_keys
    from ..service.storage import Database

    db = Database(_database_url(database_url))
    db.check_schema()
    with db.session() as session:
        infos = list_api_keys(session)
    db.dispose()
    if as_json:
        data = {"api_keys": [i.__dict__ | {"scopes": list(i.scopes)} for i in infos]}
        emit_json(data, message=f"{len(infos)} API key(s)")
        return
    for i in infos:
        state = "revoked" if i.revoked_at else (f"expires {i.expires_at}" if i.expires_at else "active")
        click.echo(f"{i.name:24} {i.id}  {' '.join(i.scopes):32} {state}")


@api_key.command("revoke")
@database_option
@click.argument("name")
@handle_errors
def api_key_revoke(database_url: str | None, name: str) -> None:
    """Revoke the API key NAME (running servers refuse it within a second).

    \b
    Examples:
      signery server api-key revoke ci
    """
    from ..service.apikeys import revoke_api_key
    from ..service.storage import Database

    db = Database(_database_url(database_url))
    db.check_schema()
    with db.session() as session:
        info = revoke_api_key(session, name=name, caller="cli")
    db.dispose()
    click.echo(f"revoked {info.name} ({info.id}) at {info.revoked_at}")


@server.group()
def audit() -> None:
    """The hash-chained audit log.

    \b
    Examples:
      signery server audit verify
      signery server audit verify --json
    """


@audit.command("verify")
@database_option
@json_option
@handle_errors
def audit_verify(database_url: str | None, as_json: bool) -> None:
    """Check the audit chain end to end; exit 1 naming the first broken row.

    \b
    Examples:
      signery server audit verify --database-url postgresql://signery@db/signery --json
    """
    from ..service.audit import verify_chain
    from ..service.storage import Database

    db = Database(_database_url(database_url))
    db.check_schema()
    try:
        report = verify_chain(db)
    finally:
        db.dispose()
    if as_json:
        message = f"audit chain intact: {report.rows} rows, head {report.head_hash}"
        emit_json({"rows": report.rows, "head_hash": report.head_hash}, message=message)
    else:
        click.echo(f"audit chain intact: {report.rows} rows, head {report.head_hash}")


PASSPHRASE_ENV = "BALENA_EXPORT_PASSPHRASE"  # noqa: S105 - the name of a variable


@server.command("import-balena")
@database_option
@master_option
@click.option(
    "--export",
    "export_file",
    default=None,
    type=click.Path(dir_okay=False, exists=True),
    help="What balenaSign's POST /export returned (its JSON, or the salt+token file).",
)
@click.option(
    "--secrets-dir",
    default=None,
    type=click.Path(file_okay=False, exists=True),
    help="A copy of balenaSign's secrets directory (gpg/, x509/, rsa/).",
)
@json_option
@handle_errors
def import_balena(
    database_url: str | None,
    master_key_file: str | None,
    export_file: str | None,
    secrets_dir: str | None,
    as_json: bool,
) -> None:
    """Seal balenaSign's keys into this service under balenaSign's ids (certificate ids, fingerprints, RSA ids).

    The export is decrypted in memory (passphrase from $BALENA_EXPORT_PASSPHRASE, else asked for); nothing is written
    to disk unencrypted. Ids imported already are skipped.

    \b
    Examples:
      signery server import-balena --export balena-export.json      # passphrase: $BALENA_EXPORT_PASSPHRASE or asked
      signery server import-balena --secrets-dir /mnt/balenasign/secrets
    """
    from ..service.balena_import import import_balena as run_import
    from ..service.storage import Database

    if (export_file is None) == (secrets_dir is None):
        raise UsageError("give --export FILE or --secrets-dir DIR", subject="--export")
    passphrase = None
    data = None
    if export_file is not None:
        data = Path(export_file).read_bytes()
        passphrase = os.environ.get(PASSPHRASE_ENV) or click.prompt("export passphrase", hide_input=True, err=True)
    master = _load_master(master_key_file)
    db = Database(_database_url(database_url))
    db.check_schema()
    try:
        report = run_import(
            db, master, export=data, passphrase=passphrase, directory=Path(secrets_dir) if secrets_dir else None
        )
    finally:
        db.dispose()
    message = f"{len(report.imported)} key(s) imported, {len(report.skipped)} skipped"
    if as_json:
        emit_json({"imported": report.imported, "skipped": report.skipped}, message=message)
        return
    for line in report.imported:
        click.echo(f"imported {line}")
    for line in report.skipped:
        click.echo(f"skipped  {line}")
    click.echo(message)
