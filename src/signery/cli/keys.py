"""``signery keygen``: create a key pair for signing."""

from __future__ import annotations

from pathlib import Path

import click

from ..errors import UsageError
from ._common import command, emit_json, handle_errors, json_option, passphrase_from_env

FORMAT_CHOICES = ("native", "dify", "openpgp")


@command()
@click.argument("name")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMAT_CHOICES),
    default="native",
    show_default=True,
    help="native: PKCS#8 PEM; dify: RSA-4096 PKCS#1 PEM as `dify signature generate` writes; openpgp: armored.",
)
@click.option(
    "--algorithm",
    help="ed25519 (native default), ecdsa-p256, ecdsa-p384, rsa-3072 (openpgp default), rsa-4096.",
)
@click.option("--uid", help='OpenPGP user id, e.g. "Alice <alice@example.org>" (openpgp only).')
@click.option("--passphrase-env", metavar="VAR", help="Encrypt the private key with the passphrase in $VAR.")
@click.option("--out-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("."), show_default=True)
@click.option("--force", is_flag=True, help="Overwrite existing key files.")
@json_option
@handle_errors
def keygen(
    name: str,
    fmt: str,
    algorithm: str | None,
    uid: str | None,
    passphrase_env: str | None,
    out_dir: Path,
    force: bool,
    as_json: bool,
) -> None:
    """Create a key pair NAME.private.* (mode 0600) and NAME.public.*.

    \b
    Examples:
      signery keygen alice                                  # Ed25519, alice.private.pem + alice.public.pem
      signery keygen release --algorithm rsa-4096 --passphrase-env RELEASE_PASS
      signery keygen alice --format openpgp --uid "Alice <alice@example.org>"

    --format dify writes the RSA-4096 PKCS#1 key that .difypkg plugins are signed with.
    """
    if "/" in name or name in ("", ".", ".."):
        raise UsageError(f"key name {name!r} must be a plain file name", subject=name)
    passphrase = passphrase_from_env(passphrase_env)
    out_dir.mkdir(parents=True, exist_ok=True)
    if fmt == "openpgp":
        from .. import openpgp
        from .._fs import atomic_write_bytes

        if not uid:
            raise UsageError("OpenPGP keys need --uid, e.g. --uid 'Alice <alice@example.org>'")
        priv, pub = out_dir / f"{name}.private.asc", out_dir / f"{name}.public.asc"
        for p in (priv, pub):
            if p.exists() and not force:
                raise UsageError(f"{p} exists; refusing to overwrite a key", subject=str(p), hint="use --force")
        key = openpgp.generate_key(uid, algorithm=algorithm or "rsa-3072", passphrase=passphrase)
        atomic_write_bytes(priv, key.secret_armored.encode(), mode=0o600, overwrite=force)
        atomic_write_bytes(pub, key.public_armored.encode(), mode=0o644, overwrite=force)
        kid = key.fingerprint
    else:
        from ..keys import generate_private_key, key_id, save_key_pair

        if fmt == "dify":
            if algorithm not in (None, "rsa-4096"):
                raise UsageError("Dify keys are RSA-4096")
            algorithm = "rsa-4096"
        key_obj = generate_private_key(algorithm or "ed25519")
        priv, pub = out_dir / f"{name}.private.pem", out_dir / f"{name}.public.pem"
        save_key_pair(
            priv, pub, key_obj, passphrase=passphrase, fmt="pkcs1" if fmt == "dify" else "pkcs8", overwrite=force
        )
        kid = key_id(key_obj.public_key())
    message = f"created {priv} (private, mode 0600) and {pub}"
    if as_json:
        data = {"key_id": kid, "private_key": str(priv), "public_key": str(pub), "format": fmt}
        emit_json(data, message=f"{message}; key id {kid}")
    else:
        click.echo(message)
        click.echo(f"key id {kid}")
