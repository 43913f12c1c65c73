"""``signery remote``: look at the keys a signing service holds (signing itself is ``signery sign --key remote:NAME``).

\b
  export SIGNERY_API_KEY=sgy_...
  signery remote keys --server https://sign.example.org
  signery remote public-key release --server https://sign.example.org > release.public.pem
  signery remote keys --server https://127.0.0.1:8443 --ca-file internal-ca.pem     # or SIGNERY_CA_FILE
"""

from __future__ import annotations

import os

import click

from ..errors import UsageError
from ._common import emit_json, group, handle_errors, json_option

API_KEY_ENV = "SIGNERY_API_KEY"
SERVER_ENV = "SIGNERY_SERVER"
CA_FILE_ENV = "SIGNERY_CA_FILE"

server_option = click.option(
    "--server", envvar=SERVER_ENV, required=True, help=f"Service URL (or ${SERVER_ENV}), e.g. http://127.0.0.1:8443."
)
ca_file_option = click.option(
    "--ca-file",
    envvar=CA_FILE_ENV,
    default=None,
    type=click.Path(dir_okay=False),
    help=f"PEM CA certificate(s) to trust for an https:// server instead of the system's (or ${CA_FILE_ENV}).",
)


@group()
def remote() -> None:
    """Keys held by a signery signing service.

    \b
    Examples:
      signery remote keys --server https://sign.example.org
      signery remote public-key release --server https://sign.example.org > release.public.pem
      signery remote keys --server https://127.0.0.1:8443 --ca-file internal-ca.pem     # or SIGNERY_CA_FILE
    """


@remote.command()
@server_option
@ca_file_option
@json_option
@handle_errors
def keys(server: str, ca_file: str | None, as_json: bool) -> None:
    """List the service's keys (needs $SIGNERY_API_KEY with read or sign scope).

    \b
    Examples:
      signery remote keys --server https://sign.example.org --json
    """
    from ..remote import remote_keys

    api_key = os.environ.get(API_KEY_ENV)
    if not api_key:
        raise UsageError(f"set {API_KEY_ENV} to an API key of the service", subject=API_KEY_ENV)
    found = remote_keys(server, api_key, ca_file=ca_file)
    if as_json:
        emit_json({"keys": found}, message=f"{len(found)} key(s) on {server}")
        return
    for k in found:
        click.echo(f"{k.get('name')!s:32} {k.get('type')!s:18} v{k.get('latest_version')}")


@remote.command("public-key")
@server_option
@ca_file_option
@click.argument("name")
@click.option("--version", "key_version", type=click.IntRange(1), default=None, help="Default: the newest.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["pem", "certificate", "openpgp"]),
    default=None,
    help="Default: the OpenPGP certificate for OpenPGP keys, else the PEM public key.",
)
@json_option
@handle_errors
def public_key(
    server: str, ca_file: str | None, name: str, key_version: int | None, fmt: str | None, as_json: bool
) -> None:
    """Print the public key of NAME (no API key needed).

    \b
    Examples:
      signery remote public-key release --server https://sign.example.org > release.public.pem
      signery remote public-key release --version 2 --format certificate --server https://sign.example.org
    """
    from ..remote import remote_public_key

    key = remote_public_key(server, name, version=key_version, ca_file=ca_file)
    if as_json:
        emit_json(dict(key.__dict__), message=f"public key of {name}")
        return
    fmt = fmt or ("openpgp" if key.openpgp_certificate else "pem")
    text = {"pem": key.public_key_pem, "certificate": key.certificate, "openpgp": key.openpgp_certificate}[fmt]
    if text is None:
        raise UsageError(f"key {name} has no {fmt} form", subject=name)
    click.echo(text.rstrip("\n"))
