"""``signery ocm``: what is particular to the Open Component Model: normalise and digest descriptors, OCM's key
file names, and transfer component versions between archives. Signing and verifying are ``signery sign`` and
``signery verify`` (``--format ocm``), as for every format."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from ..errors import UsageError
from ._common import emit_json, fail, group, handle_errors, json_option

NORMALISATIONS = ("jsonNormalisation/v1", "jsonNormalisation/v2", "jsonNormalisation/v3", "jsonNormalisation/v4alpha1")
HASHES = ("sha256", "sha512", "SHA-256", "SHA-512")


@group()
def ocm() -> None:
    """Open Component Model: normalise, digest, keygen, transfer (sign and verify: signery sign/verify).

    \b
    Examples:
      signery ocm keygen acme                                  # acme.priv / acme.pub (as `ocm create rsakeypair`)
      signery sign ./component-archive --format ocm --key acme.priv --signature-name acme
      signery verify ./component-archive --key acme.pub
      signery ocm transfer ./component-archive ./ctf
    """


def _hash(name: str) -> Any:
    from ..ocm.digests import hash_name

    return hash_name(name, field="--hash")


@ocm.command()
@click.argument("descriptor", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--algorithm", type=click.Choice(NORMALISATIONS), default="jsonNormalisation/v3", show_default=True)
@handle_errors
def normalise(descriptor: Path, algorithm: str) -> None:
    """Print the normalised bytes of DESCRIPTOR (YAML or JSON), exactly what OCM hashes; no trailing newline.

    \b
    Examples:
      signery ocm normalise component-descriptor.yaml
      signery ocm normalise component-descriptor.yaml --algorithm jsonNormalisation/v2
    """
    from ..ocm import load_descriptor
    from ..ocm import normalise as do_normalise

    data = do_normalise(load_descriptor(descriptor), algorithm)
    click.echo(data, nl=sys.stdout.isatty())  # bytes go out unchanged; a newline only for people


@ocm.command()
@click.argument("descriptor", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--algorithm", type=click.Choice(NORMALISATIONS), default="jsonNormalisation/v3", show_default=True)
@click.option("--hash", "hash_alg", type=click.Choice(HASHES), default="sha256", show_default=True)
@json_option
@handle_errors
def digest(descriptor: Path, algorithm: str, hash_alg: str, as_json: bool) -> None:
    """Print the hex digest of DESCRIPTOR's normalisation (what an OCM signature signs).

    \b
    Examples:
      signery ocm digest component-descriptor.yaml
      signery ocm digest component-descriptor.yaml --algorithm jsonNormalisation/v2 --hash sha512 --json
    """
    from ..ocm import descriptor_digest, load_descriptor
    from ..ocm.digests import OCM_HASH_NAMES

    h = _hash(hash_alg)
    value = descriptor_digest(load_descriptor(descriptor), normalisation=algorithm, hash_alg=h)
    if as_json:
        data = {"hashAlgorithm": OCM_HASH_NAMES[h], "normalisationAlgorithm": algorithm, "value": value}
        emit_json(data, message=value)
    else:
        click.echo(value)


_REPLACED = {
    "sign": "signery sign ARCHIVE --format ocm --key KEY --signature-name NAME",
    "verify": "signery verify ARCHIVE --key KEY.pub  (or a trust store: signery trust add KEY.pub --format ocm)",
}


def _replaced(command_name: str, example: str) -> click.Command:
    """A hidden stand-in for a command that moved: a usage error (exit 2) naming the command that replaced it."""

    @ocm.command(
        command_name,
        hidden=True,
        context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
        help=f"Replaced by `signery {command_name} --format ocm`; this name only says so (exit 2).\n\n"
        f"\b\nExamples:\n  {example}\n",
    )
    @click.pass_context
    def gone(ctx: click.Context) -> None:
        err = UsageError(
            f"`signery ocm {command_name}` was replaced by `signery {command_name} --format ocm`",
            subject=f"ocm {command_name}",
            hint=_REPLACED[command_name],
        )
        fail(err, as_json="--json" in ctx.args)

    return gone


_replaced("sign", "signery sign ./component-archive --format ocm --key acme.priv --signature-name acme")
_replaced("verify", "signery verify ./component-archive --key acme.pub")


@ocm.command()
@click.argument("source", type=click.Path(exists=True, path_type=Path))
@click.argument("dest", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--component", metavar="NAME[:VERSION]", help="The component version to copy (needed when SOURCE holds several)."
)
@json_option
@handle_errors
def transfer(source: Path, dest: Path, component: str | None, as_json: bool) -> None:
    """Copy a component version, its blobs and its signatures, from SOURCE into the transport archive DEST.

    SOURCE is a component archive (directory or tar) or a transport archive (CTF) directory; DEST is a CTF
    directory, created when missing or added to. Component versions SOURCE holds that it references are copied
    too, so its signatures still verify in DEST. A version DEST already holds with another descriptor is refused
    (exit 2); the same one is left as it is.

    \b
    Examples:
      signery ocm transfer ./component-archive ./ctf
      signery ocm transfer ./ctf ./other-ctf --component acme.org/app:1.0.0
    """
    from ..ocm.archive import transfer as do_transfer

    done = do_transfer(source, dest, component=component)
    parts = []
    if done.copied:
        parts.append(f"copied {', '.join(done.copied)}")
    if done.present:
        parts.append(f"already there: {', '.join(done.present)}")
    message = f"{'; '.join(parts)} -> {dest}"
    if as_json:
        data = {"dest": str(dest), "copied": done.copied, "present": done.present, "missing": done.missing}
        emit_json(data, message=message)
    else:
        click.echo(message)
    if done.missing:
        click.echo(
            f"  note: referenced but not in {source}, so not copied: {', '.join(done.missing)}; "
            f"verifying in {dest} needs them",
            err=True,
        )


@ocm.command()
@click.argument("name")
@click.option("--bits", type=click.Choice(["2048", "3072", "4096"]), default="2048", show_default=True)
@click.option("--force", is_flag=True, help="Overwrite existing key files.")
@json_option
@handle_errors
def keygen(name: str, bits: str, force: bool, as_json: bool) -> None:
    """Create NAME.priv (PKCS#1 "RSA PRIVATE KEY", mode 0600) and NAME.pub (PKCS#1 "RSA PUBLIC KEY").

    These are the files `ocm create rsakeypair NAME.priv` writes.

    \b
    Examples:
      signery ocm keygen acme
      signery ocm keygen keys/acme.priv --bits 4096 --force
    """
    from ..keys import generate_private_key, key_id, save_key_pair

    base = Path(name[: -len(".priv")] if name.endswith(".priv") else name)
    if base.name in ("", ".", ".."):
        raise UsageError(f"key name {name!r} is not a file name", subject=name)
    key = generate_private_key(f"rsa-{bits}")
    paths = save_key_pair(
        base.with_name(base.name + ".priv"), base.with_name(base.name + ".pub"), key, fmt="pkcs1", overwrite=force
    )
    message = f"created rsa key pair {paths.private}[{paths.public}]"
    if as_json:
        data = {"private": str(paths.private), "public": str(paths.public), "key_id": key_id(key.public_key())}
        emit_json(data, message=message)
    else:
        click.echo(message)
