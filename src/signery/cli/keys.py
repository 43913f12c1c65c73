"""``signery keygen``: create a key pair for signing."""

from __future__ import annotations

from pathlib import Path

import click

from ..errors import UsageError
from ._common import (
    Passphrase,
    available_formats,
    command,
    emit_json,
    handle_errors,
    json_option,
    passphrase_options,
    resolve_passphrase,
)

# The formats keygen makes keys for, in the registry's order (signery.formats.names(), the installed ones).
# OCM keys come from `signery ocm keygen`; the other formats sign with keys made elsewhere (X.509, UEFI...).
KEYGEN_FORMATS = available_formats(only=("native", "dify", "openpgp"))
DEFAULT_ALGORITHM = {"native": "ed25519", "dify": "rsa-4096", "openpgp": "rsa-3072"}
OPENPGP_ALGORITHMS = ("rsa-3072", "rsa-4096", "ed25519")


@command()
@click.argument("name")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(KEYGEN_FORMATS),
    default="native",
    show_default=True,
    help="native: PKCS#8 PEM; dify: RSA-4096 PKCS#1 PEM as `dify signature generate` writes; openpgp: armored.",
)
@click.option(
    "--algorithm",
    help="ed25519 (native default), ecdsa-p256, ecdsa-p384, rsa-3072 (openpgp default: what Mattermost asks for "
    "and GRUB and Go's x/crypto/openpgp read), rsa-4096.",
)
@click.option("--uid", help='OpenPGP user id, e.g. "Alice <alice@example.org>" (openpgp only).')
@click.option(
    "--encrypt",
    is_flag=True,
    help="Encrypt the private key: with the passphrase of --passphrase-env/--passphrase-file, else one typed on "
    "the terminal (twice). Either option alone encrypts too.",
)
@click.option(
    "--pkcs11",
    "pkcs11_uri",
    metavar="URI",
    help="Generate the key inside a PKCS#11 token (pkcs11:token=...;object=NAME); only NAME.public.pem is written.",
)
@click.option("--pin-env", metavar="VAR", help="With --pkcs11: the token PIN from $VAR (default: the URI's, or asked).")
@passphrase_options
@click.option("--out-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("."), show_default=True)
@click.option("--force", is_flag=True, help="Overwrite existing key files.")
@json_option
@handle_errors
def keygen(
    name: str,
    fmt: str,
    algorithm: str | None,
    uid: str | None,
    encrypt: bool,
    pkcs11_uri: str | None,
    pin_env: str | None,
    passphrase: Passphrase,
    out_dir: Path,
    force: bool,
    as_json: bool,
) -> None:
    """Create a key pair NAME.private.* (mode 0600) and NAME.public.*.

    \b
    Examples:
      signery keygen alice                                  # Ed25519, alice.private.pem + alice.public.pem
      signery keygen release --algorithm rsa-4096 --encrypt # asks for the passphrase
      signery keygen alice --format openpgp --uid "Alice <alice@example.org>"
      signery keygen release --pkcs11 'pkcs11:token=build;object=release' --algorithm rsa-3072

    --format dify writes the RSA-4096 PKCS#1 key that .difypkg plugins are signed with; --format openpgp an
    RSA-3072 key unless --algorithm ed25519 (or rsa-4096) is given.
    """
    if "/" in name or name in ("", ".", ".."):
        raise UsageError(f"key name {name!r} must be a plain file name", subject=name)
    if pkcs11_uri is not None:
        _token_keygen(name, fmt, algorithm, pkcs11_uri, pin_env, out_dir, force=force, as_json=as_json)
        return
    if fmt == "openpgp":
        priv, pub = out_dir / f"{name}.private.asc", out_dir / f"{name}.public.asc"
    else:
        priv, pub = out_dir / f"{name}.private.pem", out_dir / f"{name}.public.pem"
    algorithm = _algorithm(fmt, algorithm)
    if fmt == "openpgp" and not uid:
        raise UsageError("OpenPGP keys need --uid, e.g. --uid 'Alice <alice@example.org>'", subject="--uid")
    for p in (priv, pub):
        if p.exists() and not force:
            raise UsageError(f"{p} exists; refusing to overwrite a key", subject=str(p), hint="use --force")
    secret = resolve_passphrase(passphrase, what=str(priv), required=encrypt, confirm=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    short: str
    if fmt == "openpgp":
        from .. import openpgp
        from .._fs import atomic_write_bytes

        assert uid is not None
        key = openpgp.generate_key(uid, algorithm=algorithm, passphrase=secret)
        atomic_write_bytes(priv, key.secret_armored.encode(), mode=0o600, overwrite=force)
        atomic_write_bytes(pub, key.public_armored.encode(), mode=0o644, overwrite=force)
        kid, short = key.fingerprint, key.key_id
    else:
        from ..keys import generate_private_key, key_id, save_key_pair, short_id

        key_obj = generate_private_key(algorithm)
        save_key_pair(priv, pub, key_obj, passphrase=secret, fmt="pkcs1" if fmt == "dify" else "pkcs8", overwrite=force)
        kid = key_id(key_obj.public_key())
        short = short_id(kid)
    state = "encrypted, " if secret is not None else ""
    message = f"created {priv} (private, {state}mode 0600) and {pub}"
    if as_json:
        data = {
            "key_id": kid,
            "short_id": short,
            "private_key": str(priv),
            "public_key": str(pub),
            "format": fmt,
            "algorithm": algorithm,
            "encrypted": secret is not None,
        }
        emit_json(data, message=f"{message}; key id {kid}")
    elif fmt == "openpgp":
        click.echo(message)
        click.echo(f"fingerprint {kid}")
        click.echo(f"key id {short}")
    else:
        click.echo(message)
        click.echo(f"key id {kid}")


def _algorithm(fmt: str, algorithm: str | None) -> str:
    """The algorithm to generate for ``fmt``: ``algorithm`` checked, or the format's default."""
    chosen = (algorithm or DEFAULT_ALGORITHM[fmt]).lower()
    if fmt == "dify" and chosen != "rsa-4096":
        raise UsageError(f"Dify keys are RSA-4096, not {algorithm}", subject="--algorithm")
    if fmt == "openpgp" and chosen not in OPENPGP_ALGORITHMS:
        raise UsageError(
            f"OpenPGP keys here are {', '.join(OPENPGP_ALGORITHMS)}, not {algorithm}",
            subject="--algorithm",
            hint="rsa-3072 (the default) is what Mattermost, GRUB and Go's x/crypto/openpgp expect",
        )
    return chosen


def _token_keygen(
    name: str,
    fmt: str,
    algorithm: str | None,
    uri: str,
    pin_env: str | None,
    out_dir: Path,
    *,
    force: bool,
    as_json: bool,
) -> None:
    """``keygen --pkcs11``: the key pair is made inside the token (never extractable); its public half is written."""
    import os

    from ..keys import key_id, public_key_pem
    from ..pkcs11 import generate_key
    from .sign import _pin

    if fmt == "openpgp":
        raise UsageError(
            "--pkcs11 makes PKIX keys (native, dify); bind a token key to OpenPGP with a certificate made for it",
            subject="--pkcs11",
        )
    chosen = _algorithm(fmt, algorithm)
    pub = out_dir / f"{name}.public.pem"
    if pub.exists() and not force:
        raise UsageError(f"{pub} exists; refusing to overwrite a key", subject=str(pub), hint="use --force")
    public = generate_key(uri, chosen, module=os.environ.get("SIGNERY_PKCS11_MODULE") or None, pin=_pin(uri, pin_env))
    out_dir.mkdir(parents=True, exist_ok=True)
    from .._fs import atomic_write_bytes

    pem = public_key_pem(public, fmt="pkcs1" if fmt == "dify" else "pkcs8")
    atomic_write_bytes(pub, pem, mode=0o644, overwrite=True)
    kid = key_id(public)
    message = f"created {chosen} key {name} inside the token ({uri}); public key {pub}; key id {kid}"
    if as_json:
        data = {"key_id": kid, "public_key": str(pub), "token": str(uri), "format": fmt, "algorithm": chosen}
        emit_json(data, message=message)
    else:
        click.echo(message)
