"""``signery ca``: a small code-signing certificate authority (root, intermediate, leaf)."""

from __future__ import annotations

from pathlib import Path

import click

from ._common import emit_json, group, handle_errors, json_option, passphrase_from_env

KEY_TYPES = ("rsa-2048", "rsa-3072", "rsa-4096", "ecdsa-p256", "ecdsa-p384", "ed25519")
_out = click.option(
    "--out", required=True, type=click.Path(path_type=Path), help="Writes OUT.cert.pem and OUT.key.pem (0600)."
)
_subject = click.option(
    "--subject", required=True, help='Subject DN, e.g. "/CN=acme.org/O=ACME" or "CN=acme.org,O=ACME".'
)
_key_type = click.option("--key-type", type=click.Choice(KEY_TYPES), default="rsa-2048", show_default=True)
_ca = click.option(
    "--ca",
    "ca_name",
    required=True,
    type=click.Path(path_type=Path),
    help="Issuing CA: reads CA.cert.pem and CA.key.pem.",
)
_force = click.option("--force", is_flag=True, help="Overwrite existing files.")
_passphrase = click.option("--passphrase-env", metavar="VAR", help="Passphrase of the CA key in $VAR.")


@group()
def ca() -> None:
    """Create a code-signing PKI: a root, intermediates, and leaf certificates for OCM signing.

    Then sign with the leaf: signery sign ./ca --key acme.key.pem --chain acme.cert.pem --signature-name acme

    \b
    Examples:
      signery ca create-root --subject "/CN=ACME Root CA" --out root
      signery ca create-intermediate --ca root --subject "/CN=ACME Signing CA" --out signing-ca
      signery ca issue --ca signing-ca --subject "/CN=acme.org/O=ACME" --code-signing --out acme
    """


def _report(kind: str, paths: tuple[Path, Path], subject: str, as_json: bool) -> None:
    message = f"created {kind} {subject}: {paths[0]} (key {paths[1]})"
    if as_json:
        data = {"kind": kind, "subject": subject, "certificate": str(paths[0]), "key": str(paths[1])}
        emit_json(data, message=message)
    else:
        click.echo(message)


@ca.command("create-root")
@_subject
@_out
@_key_type
@click.option("--days", type=int, default=3650, show_default=True)
@_force
@json_option
@handle_errors
def create_root(subject: str, out: Path, key_type: str, days: int, force: bool, as_json: bool) -> None:
    """Create a self-signed root CA.

    \b
    Examples:
      signery ca create-root --subject "/CN=ACME Root CA" --out root
      signery ca create-root --subject "/CN=ACME Root CA" --key-type ecdsa-p384 --days 7300 --out root
    """
    from .. import x509ca

    ident = x509ca.create_root(subject, key_type=key_type, days=days)
    _report("root CA", x509ca.save(ident, out, overwrite=force), ident.certificate.subject.rfc4514_string(), as_json)


@ca.command("create-intermediate")
@_ca
@_subject
@_out
@_key_type
@click.option("--days", type=int, default=1825, show_default=True)
@click.option("--path-length", type=int, default=0, show_default=True, help="CAs allowed below this one.")
@_passphrase
@_force
@json_option
@handle_errors
def create_intermediate(
    ca_name: Path,
    subject: str,
    out: Path,
    key_type: str,
    days: int,
    path_length: int,
    passphrase_env: str | None,
    force: bool,
    as_json: bool,
) -> None:
    """Create an intermediate CA signed by --ca.

    \b
    Examples:
      signery ca create-intermediate --ca root --subject "/CN=ACME Signing CA" --out signing-ca
    """
    from .. import x509ca

    parent = x509ca.load(ca_name, passphrase=passphrase_from_env(passphrase_env))
    ident = x509ca.create_intermediate(parent, subject, key_type=key_type, days=days, path_length=path_length)
    _report(
        "intermediate CA", x509ca.save(ident, out, overwrite=force), ident.certificate.subject.rfc4514_string(), as_json
    )


@ca.command()
@_ca
@_subject
@_out
@_key_type
@click.option("--code-signing/--no-code-signing", default=True, show_default=True, help="Add the CodeSigning EKU.")
@click.option("--days", type=int, default=365, show_default=True)
@_passphrase
@_force
@json_option
@handle_errors
def issue(
    ca_name: Path,
    subject: str,
    out: Path,
    key_type: str,
    code_signing: bool,
    days: int,
    passphrase_env: str | None,
    force: bool,
    as_json: bool,
) -> None:
    """Issue a leaf certificate (DigitalSignature; CodeSigning EKU unless --no-code-signing) signed by --ca.

    \b
    Examples:
      signery ca issue --ca signing-ca --subject "/CN=acme.org/O=ACME" --out acme
      signery ca issue --ca signing-ca --subject "/CN=acme.org" --passphrase-env CA_PASS --days 90 --out acme
    """
    from .. import x509ca

    parent = x509ca.load(ca_name, passphrase=passphrase_from_env(passphrase_env))
    ident = x509ca.issue(parent, subject, key_type=key_type, code_signing=code_signing, days=days)
    _report(
        "certificate", x509ca.save(ident, out, overwrite=force), ident.certificate.subject.rfc4514_string(), as_json
    )
