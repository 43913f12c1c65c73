"""``signery sign``: sign a package, file or directory in any supported format.

The command knows no format: it loads the signer (:func:`signery.load_signer`), lets the format registry pick the
format when none is named (:func:`signery.formats.infer_format`), hands every option given on the command line to
that format's options type, which refuses the ones it does not take, and signs through
:func:`signery.formats.sign`, which never overwrites an output it should not.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ..errors import UsageError
from ._common import (
    Passphrase,
    Progress,
    available_formats,
    command,
    emit_json,
    handle_errors,
    json_option,
    passphrase_options,
    quiet_option,
    unlock,
)

if TYPE_CHECKING:
    from ..keys import Signer

ELASTIC_KEY_ENV = "ELASTIC_PACKAGE_SIGNER_PRIVATE_KEYFILE"
ELASTIC_PASSPHRASE_ENV = "ELASTIC_PACKAGE_SIGNER_PASSPHRASE"  # noqa: S105 - a variable's name, not a secret


def _claims(values: tuple[str, ...]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--claim takes key=value, got {item!r}", subject=item)
        if key in out:
            raise UsageError(f"claim {key!r} given twice", subject=key)
        out[key] = value
    return out


def load_signer(
    key: str | None,
    *,
    passphrase: Passphrase,
    server: str | None,
    ca_file: str | None = None,
    pin_env: str | None = None,
) -> Signer:
    """The signer ``--key`` names: a PEM or OpenPGP key file, or ``remote:NAME`` held by a signing service.

    With no ``--key``, elastic-package's ``$ELASTIC_PACKAGE_SIGNER_PRIVATE_KEYFILE`` (and its passphrase variable)
    are honoured, as Elastic's tooling does. An encrypted key with no passphrase given is asked for on a terminal.
    """
    if key is None and os.environ.get(ELASTIC_KEY_ENV):
        key = os.environ[ELASTIC_KEY_ENV]
        passphrase = passphrase.with_default_env(ELASTIC_PASSPHRASE_ENV)
    if key is None:
        raise UsageError("which key? give --key FILE (or --key remote:NAME)", subject="--key")
    from .. import load_signer as load

    ref = key
    token_pin = _pin(ref, pin_env)
    return unlock(
        lambda pw: load(ref, passphrase=pw, server=server, ca_file=ca_file, env=os.environ, pin=token_pin),
        passphrase,
        what=ref,
    )


def _pin(ref: str, pin_env: str | None) -> str | None:
    """A PKCS#11 token's PIN: from ``--pin-env VAR``, else the URI's own, else asked on a terminal (never echoed)."""
    from .. import PKCS11_PREFIX

    if not ref.startswith(PKCS11_PREFIX):
        if pin_env:
            raise UsageError("--pin-env is for pkcs11: keys", subject="--pin-env")
        return None
    if pin_env:
        value = os.environ.get(pin_env)
        if not value:
            raise UsageError(f"--pin-env names {pin_env}, which is not set or empty", subject=pin_env)
        return value
    from .._internal.pkcs11_uri import parse_uri

    uri = parse_uri(ref)
    if uri.has_pin or not sys.stdin.isatty():
        return None  # the URI's pin-source/pin-value; without either the token says a PIN is needed
    return str(click.prompt(f"PIN for {uri}", hide_input=True, err=True))


def _given(options: dict[str, Any]) -> dict[str, Any]:
    """The options actually given on the command line (flags left off and unset values are not)."""
    return {k: v for k, v in options.items() if v is not None and v is not False and v != ()}


@command()
@click.argument("subject", type=click.Path(exists=True, path_type=Path))
@click.option(
    "--key",
    "-k",
    help="Private key file (PEM or OpenPGP), remote:NAME (a signing service's key) or a pkcs11: URI (a token's).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(available_formats()),
    help="The signature format (default: inferred from the key and SUBJECT, and printed).",
)
@click.option("--output", "-o", type=click.Path(path_type=Path), help="Where to write (default depends on format).")
@click.option("--force", is_flag=True, help="Replace an existing output file.")
@click.option("--in-place", is_flag=True, default=None, help="native: add the signature to SUBJECT itself.")
@click.option("--detached", is_flag=True, default=None, help="native: write SUBJECT.signery.json even for a ZIP.")
@click.option("--digest", type=click.Choice(["sha256", "sha512", "blake3"]), help="native: each file's digest.")
@click.option("--claim", "claims", multiple=True, metavar="KEY=VALUE", help="native: a signed claim (name=...).")
@click.option("--category", type=click.Choice(["langgenius", "partner", "community"]), help="dify: the category.")
@click.option("--armor", is_flag=True, default=None, help="openpgp: an ASCII-armored signature (Elastic, Kibana).")
@click.option(
    "--hash-algorithm",
    type=click.Choice(["sha256", "sha384", "sha512"]),
    help="openpgp, ocm, authenticode, kmod: the digest signed (default: the format's).",
)
@click.option(
    "--certificate",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The signer's certificate: X.509 PEM (authenticode, kmod, uefi) or OpenPGP (openpgp, for a PEM key).",
)
@click.option("--signature-name", metavar="NAME", help="ocm: the signature's name (replaces only that one).")
@click.option("--algorithm", help="ocm: RSASSA-PKCS1-V1_5, RSASSA-PSS or ed25519.")
@click.option("--normalisation", help="ocm: the descriptor normalisation (default jsonNormalisation/v3).")
@click.option("--chain", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="ocm: chain PEM.")
@click.option("--issuer", help="ocm: the issuer DN to record.")
@click.option("--issuer-convention", type=click.Choice(["subject", "issuer"]), help="ocm: what --chain records.")
@click.option("--component", metavar="NAME[:VERSION]", help="ocm: the component version in a transport archive.")
@click.option(
    "--repository",
    multiple=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="ocm: a transport archive to resolve references from; repeatable.",
)
@click.option("--replace", is_flag=True, default=None, help="kmod: re-sign a module that is signed already.")
@click.option("--variable", type=click.Choice(["PK", "KEK", "db", "dbx"]), help="uefi: the variable updated.")
@click.option("--append", is_flag=True, default=None, help="uefi: an append (not a replacing) update.")
@click.option("--owner-guid", metavar="GUID", help="uefi: the owner GUID of a certificate's ESL entry.")
@click.option("--timestamp", metavar="TIME", help="uefi: the update's EFI_TIME (ISO 8601; default now, 0 for append).")
@click.option("--pin-env", metavar="VAR", help="A pkcs11: key's token PIN from $VAR (default: the URI's, or asked).")
@click.option("--server", metavar="URL", help="Signing service URL for remote:NAME keys (or $SIGNERY_SERVER).")
@click.option(
    "--ca-file",
    envvar="SIGNERY_CA_FILE",
    type=click.Path(dir_okay=False),
    help="PEM CA certificate(s) to trust for an https:// signing service (or $SIGNERY_CA_FILE).",
)
@quiet_option
@passphrase_options
@json_option
@handle_errors
def sign(
    subject: Path,
    key: str | None,
    fmt: str | None,
    output: Path | None,
    force: bool,
    passphrase: Passphrase,
    pin_env: str | None,
    server: str | None,
    ca_file: str | None,
    quiet: bool,
    as_json: bool,
    claims: tuple[str, ...],
    **options: Any,
) -> None:
    """Sign SUBJECT: a package (ZIP, .difypkg, .whl, .tar.gz...), any file, a directory or a component archive.

    Without --format the format follows from the key and SUBJECT, and is printed: an OpenPGP key signs a detached
    OpenPGP signature X.sig, a component archive gets an OCM signature, a .difypkg with an RSA key gets Dify's,
    and everything else signery's native format (a ZIP gets a signed copy X.signed.zip, anything else a detached
    X.signery.json). An existing output is never replaced without --force; --in-place adds a native signature to
    the ZIP itself, keeping those it has (a countersignature).

    --key remote:NAME --server URL signs with a key held by a signing service, which never hands it out.

    \b
    Examples:
      signery sign plugin.zip --key alice.private.pem --claim name=acme-search --claim version=1.2.0
      signery sign plugin.signed.zip --key marketplace.private.pem --in-place     # countersign
      signery sign plugin.difypkg --key acme.private.pem --category partner       # Dify, from the RSA key
      signery sign acme-1.2.0.zip --key release.secret.asc --armor                # OpenPGP, Elastic style
      signery sign ./component-archive --key acme.priv --signature-name acme      # OCM
    """
    from .. import formats

    if claims:
        options["claims"] = _claims(claims)
    signer = load_signer(key, passphrase=passphrase, server=server, ca_file=ca_file, pin_env=pin_env)
    name = fmt or formats.infer_format(subject, signer)
    chosen = formats.get_format(name)
    opts = chosen.options(_given(options))
    if fmt is None and not as_json:
        click.echo(f"format: {name} (inferred from the key and {subject.name}; --format to choose)", err=True)
    for caution in chosen.cautions(signer):
        click.echo(f"warning: {caution}", err=True)
    total = subject.stat().st_size if subject.is_file() else 0
    bar = Progress(total, f"signing {subject.name}", quiet=quiet)
    try:
        _, written = formats.sign(
            subject, signer, format=name, output=output, options=opts, overwrite=force, progress=bar.advance
        )
    finally:
        bar.close()
    kid = chosen.identity(signer)
    message = f"signed {subject} with {kid} ({name}) -> {written}"
    if as_json:
        emit_json({"format": name, "inferred": fmt is None, "written": str(written), "key_id": kid}, message=message)
    else:
        click.echo(message)
