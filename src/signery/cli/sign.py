"""``signery sign``: sign a package, file or directory in any supported format."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ..errors import UsageError
from ._common import Progress, command, emit_json, handle_errors, json_option, passphrase_from_env

if TYPE_CHECKING:
    from ..keys import Signer

REMOTE_PREFIX = "remote:"


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


def _remote(key: str, server: str | None, fmt: str, ca_file: str | None) -> Signer:
    from .. import remote  # type: ignore[attr-defined,unused-ignore]

    name = key[len(REMOTE_PREFIX) :]
    server = server or os.environ.get("SIGNERY_SERVER")
    if not server:
        raise UsageError("remote keys need --server URL (or $SIGNERY_SERVER)", subject="--server")
    api_key = os.environ.get("SIGNERY_API_KEY")
    if not api_key:
        raise UsageError("remote keys need an API key in $SIGNERY_API_KEY", subject="SIGNERY_API_KEY")
    if fmt == "openpgp":  # an OpenPGP service key, bound to the certificate the service publishes
        return remote.RemoteOpenPGPSigner(server, api_key, name, ca_file=ca_file)
    return remote.RemoteSigner(server, api_key, name, ca_file=ca_file)


def load_signer(
    key: str | None, *, fmt: str, passphrase_env: str | None, server: str | None, ca_file: str | None = None
) -> Signer:
    """The signer for ``--key``: a key file, or ``remote:NAME`` held by a signing service.

    For ``openpgp`` it is an :class:`~signery.openpgp.OpenPGPSigner`: an OpenPGP secret key, or a service OpenPGP
    key, each bound to its certificate.
    """
    if fmt == "openpgp" and key is None and os.environ.get("ELASTIC_PACKAGE_SIGNER_PRIVATE_KEYFILE"):
        # Elastic's elastic-package conventions, honoured when no --key is given.
        key = os.environ["ELASTIC_PACKAGE_SIGNER_PRIVATE_KEYFILE"]
        if passphrase_env is None and os.environ.get("ELASTIC_PACKAGE_SIGNER_PASSPHRASE"):
            passphrase_env = "ELASTIC_PACKAGE_SIGNER_PASSPHRASE"  # noqa: S105 - the variable's name, not a secret
    if key is None:
        raise UsageError("which key? give --key FILE (or --key remote:NAME)", subject="--key")
    if key.startswith(REMOTE_PREFIX):
        return _remote(key, server, fmt, ca_file)
    passphrase = passphrase_from_env(passphrase_env)
    if fmt == "openpgp":
        from .. import openpgp
        from ..keys import read_key_file

        return openpgp.load_signer(read_key_file(Path(key)), passphrase=passphrase, source=key)
    from ..keys import FileSigner, load_private_key_file

    return FileSigner(load_private_key_file(Path(key), passphrase=passphrase), name=key)


def _identity(signer: Signer, fmt: str) -> str:
    """How the signature names its key: the OpenPGP fingerprint, else signery's key id."""
    if fmt != "openpgp":
        return signer.key_id  # no OpenPGP import for the other formats: it costs tens of milliseconds
    from ..openpgp import OpenPGPSigner

    return signer.fingerprint if isinstance(signer, OpenPGPSigner) else signer.key_id


@command()
@click.argument("subject", type=click.Path(exists=True, path_type=Path))
@click.option("--key", "-k", help="Private key file, or remote:NAME for a key held by a signing service.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["native", "dify", "openpgp"]),
    default="native",
    show_default=True,
    help="native: DSSE/in-toto over every file; dify: .difypkg ZIP-comment signature; openpgp: detached .sig.",
)
@click.option("--output", "-o", type=click.Path(path_type=Path), help="Where to write (default depends on format).")
@click.option("--in-place", is_flag=True, help="Add the signature to SUBJECT itself (ZIPs, native format).")
@click.option("--detached", is_flag=True, help="Write SUBJECT.signery.json even for a ZIP (native format).")
@click.option(
    "--digest",
    type=click.Choice(["sha256", "sha512", "blake3"]),
    default="sha256",
    show_default=True,
    help="Digest of each file (native).",
)
@click.option("--claim", "claims", multiple=True, metavar="KEY=VALUE", help="A signed claim (name, version, ...).")
@click.option("--category", type=click.Choice(["langgenius", "partner", "community"]), help="Dify category.")
@click.option("--armor", is_flag=True, help="ASCII-armored OpenPGP signature (Elastic style).")
@click.option("--passphrase-env", metavar="VAR", help="Read the private key's passphrase from $VAR.")
@click.option("--server", metavar="URL", help="Signing service URL for remote:NAME keys (or $SIGNERY_SERVER).")
@click.option(
    "--ca-file",
    envvar="SIGNERY_CA_FILE",
    type=click.Path(dir_okay=False),
    help="PEM CA certificate(s) to trust for an https:// signing service (or $SIGNERY_CA_FILE).",
)
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@json_option
@handle_errors
def sign(
    subject: Path,
    key: str | None,
    fmt: str,
    output: Path | None,
    in_place: bool,
    detached: bool,
    digest: str,
    claims: tuple[str, ...],
    category: str | None,
    armor: bool,
    passphrase_env: str | None,
    server: str | None,
    ca_file: str | None,
    quiet: bool,
    as_json: bool,
) -> None:
    """Sign SUBJECT: a package (ZIP, .difypkg, .whl, ...), any file, or a directory.

    \b
    Native format (default): a ZIP gets a signed copy X.signed.zip with the signature embedded
    (--in-place adds it to X itself; an existing signature is kept, so a second key countersigns);
    any other file or directory gets a detached X.signery.json beside it.

    --format dify signs a .difypkg (--category partner...), --format openpgp writes X.sig (X.asc with --armor);
    --key remote:NAME --server URL signs with a key held by a signing service.

    \b
    Examples:
      signery sign plugin.zip --key alice.private.pem --claim name=acme-search --claim version=1.2.0
      signery sign plugin.signed.zip --key marketplace.private.pem --in-place     # countersign
      signery sign plugin.difypkg --format dify --key acme.private.pem --category partner
    """
    from ..formats import get_format

    claim_map = _claims(claims)
    signer = load_signer(key, fmt=fmt, passphrase_env=passphrase_env, server=server, ca_file=ca_file)
    module = get_format(fmt)
    if fmt == "native":
        options: dict[str, Any] = {"in_place": in_place, "detached": detached, "digest": digest, "claims": claim_map}
    elif claim_map or detached or in_place:
        raise UsageError("--claim, --detached and --in-place apply to the native format")
    elif fmt == "dify":
        options = {"category": category or "langgenius"}
    else:
        options = {"armor": armor}
    total = subject.stat().st_size if subject.is_file() else 0
    bar = Progress(total, f"signing {subject.name}", quiet=quiet)
    try:
        written = module.sign(subject, signer, output=output, progress=bar.advance, **options)
    finally:
        bar.close()
    kid = _identity(signer, fmt)
    message = f"signed {subject} with {kid} ({fmt}) -> {written}"
    if as_json:
        emit_json({"format": fmt, "written": str(written), "key_id": kid}, message=message)
    else:
        click.echo(message)
