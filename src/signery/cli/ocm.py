"""``signery ocm``: normalise, digest, sign and verify Open Component Model component versions."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from ..errors import UsageError
from ._common import emit_json, group, handle_errors, json_option, passphrase_from_env

NORMALISATIONS = ("jsonNormalisation/v1", "jsonNormalisation/v2", "jsonNormalisation/v3", "jsonNormalisation/v4alpha1")
HASHES = ("sha256", "sha512", "SHA-256", "SHA-512")


@group()
def ocm() -> None:
    """Open Component Model component versions: normalise, digest, sign, verify.

    \b
    Examples:
      signery ocm keygen acme                                  # acme.priv / acme.pub (as `ocm create rsakeypair`)
      signery ocm sign ./component-archive --signature acme --key acme.priv
      signery ocm verify ./component-archive --signature acme --public-key acme.pub
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


def _repositories(cv_repo: Any, repos: tuple[Path, ...]) -> Any:
    from ..ocm.archive import Repositories, open_repository

    return Repositories(cv_repo, *(open_repository(p) for p in repos))


def _certs(path: Path | None) -> list[Any]:
    if path is None:
        return []
    from ..ocm.x509chain import load_pem_certificates

    return load_pem_certificates(path.read_bytes(), source=str(path))


_archive_arg = click.argument("archive", type=click.Path(path_type=Path))
_component_opt = click.option(
    "--component", metavar="NAME[:VERSION]", help="The component version to use inside a transport archive."
)
_repo_opt = click.option(
    "--repo",
    "repos",
    multiple=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="A transport archive (directory) to resolve references from; repeatable.",
)


@ocm.command()
@_archive_arg
@click.option(
    "--signature", "name", required=True, help="Name of the signature (replaces only a signature of that name)."
)
@click.option("--key", "key_path", required=True, type=click.Path(dir_okay=False, path_type=Path), help="Private key.")
@click.option("--issuer", help="Issuer DN to record (default with --cert: see --issuer-convention).")
@click.option(
    "--cert",
    "cert_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Certificate chain PEM, leaf first; embedded in the signature.",
)
@click.option(
    "--issuer-convention",
    type=click.Choice(["subject", "issuer"]),
    default="subject",
    show_default=True,
    help="With --cert and no --issuer: record the leaf's subject (legacy OCM CLI) or its issuer DN (OCM v2 library).",
)
@click.option(
    "--algorithm",
    type=click.Choice(["RSASSA-PKCS1-V1_5", "RSASSA-PSS", "ed25519"]),
    default="RSASSA-PKCS1-V1_5",
    show_default=True,
)
@click.option("--normalisation", type=click.Choice(NORMALISATIONS), default="jsonNormalisation/v3", show_default=True)
@click.option("--hash", "hash_alg", type=click.Choice(HASHES), default="sha256", show_default=True)
@_component_opt
@_repo_opt
@click.option("--passphrase-env", metavar="VAR", help="Read the private key's passphrase from $VAR.")
@json_option
@handle_errors
def sign(
    archive: Path,
    name: str,
    key_path: Path,
    issuer: str | None,
    cert_path: Path | None,
    issuer_convention: str,
    algorithm: str,
    normalisation: str,
    hash_alg: str,
    component: str | None,
    repos: tuple[Path, ...],
    passphrase_env: str | None,
    as_json: bool,
) -> None:
    """Sign the component version in ARCHIVE (component archive directory or tar, or transport archive directory).

    Digests of local resources and of referenced component versions are computed and stored first; the
    archive is rewritten atomically.

    \b
    Examples:
      signery ocm sign ./ca --signature acme --key acme.priv
      signery ocm sign ./ctf --component acme.org/app:1.0.0 --signature acme --key acme.key.pem --cert acme.cert.pem
    """
    from ..keys import FileSigner, load_private_key_file
    from ..ocm import open_component_version, sign_component_version

    signer = FileSigner(
        load_private_key_file(key_path, passphrase=passphrase_from_env(passphrase_env)), name=str(key_path)
    )
    cv, repo = open_component_version(archive, component=component)
    entry = sign_component_version(
        cv,
        signer,
        name=name,
        repository=_repositories(repo, repos),
        algorithm=algorithm,
        normalisation=normalisation,
        hash_alg=_hash(hash_alg),
        certificates=_certs(cert_path),
        issuer=issuer,
        issuer_mode="issuer" if issuer_convention == "issuer" else "subject",
    )
    message = f"signed {cv.descriptor.identity} as {name!r} (digest {entry['digest']['value']})"
    if as_json:
        emit_json({"component": cv.descriptor.identity, "signature": entry}, message=message)
    else:
        click.echo(message)


@ocm.command()
@_archive_arg
@click.option("--signature", "name", required=True, help="Name of the signature to verify.")
@click.option(
    "--public-key", "public_key", type=click.Path(dir_okay=False, path_type=Path), help="Verify with this public key."
)
@click.option(
    "--ca-cert",
    "ca_cert",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Root certificate(s) PEM to validate the signer's chain up to.",
)
@click.option(
    "--cert",
    "cert_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Chain PEM (leaf first) if the signature does not embed one.",
)
@click.option("--issuer", help="Require the signing certificate to match this DN too.")
@click.option(
    "--issuer-convention",
    type=click.Choice(["auto", "subject", "issuer"]),
    default="auto",
    show_default=True,
    help="How `issuer` names the signer: subject (legacy OCM CLI), issuer (OCM v2 library), or either.",
)
@_component_opt
@_repo_opt
@json_option
@handle_errors
def verify(
    archive: Path,
    name: str,
    public_key: Path | None,
    ca_cert: Path | None,
    cert_path: Path | None,
    issuer: str | None,
    issuer_convention: str,
    component: str | None,
    repos: tuple[Path, ...],
    as_json: bool,
) -> None:
    """Verify signature NAME of the component version in ARCHIVE; every digest is recomputed.

    Exit 0 verified, 1 refused (tampered, bad-signature, expired-key, unknown-key, policy-violation).

    \b
    Examples:
      signery ocm verify ./ca --signature acme --public-key acme.pub
      signery ocm verify ./ca --signature acme --ca-cert root.cert.pem
    """
    from ..keys import load_public_key_file
    from ..ocm import open_component_version, verify_component_version

    if (public_key is None) == (ca_cert is None):
        raise UsageError("give exactly one of --public-key or --ca-cert", subject="--public-key")
    cv, repo = open_component_version(archive, component=component)
    result = verify_component_version(
        cv,
        signature=name,
        repository=_repositories(repo, repos),
        public_key=load_public_key_file(public_key) if public_key else None,
        roots=_certs(ca_cert),
        certificates=_certs(cert_path),
        issuer=issuer,
        issuer_convention=issuer_convention,  # type: ignore[arg-type]
    )
    if as_json:
        reason = result.reason.value if result.reason else None
        emit_json(result.to_dict(), ok=result.verified, reason=reason, message=result.message)
    elif result.verified:
        check = result.signatures[0]
        who = check.claims.get("certificate") or (check.key_id or "")[:16]
        click.echo(f"verified {result.subject}: signature {name!r} by {who}")
        unchecked = check.claims.get("unchecked_resources") or []
        if unchecked:
            click.echo(f"  note: not re-digested (not local blobs): {', '.join(unchecked)}", err=True)
    if not result.verified:
        if not as_json:
            click.echo(f"signery: {result.reason.value if result.reason else 'refused'}: {result.message}", err=True)
            if result.fault:
                click.echo(f"  at: {result.fault}", err=True)
        sys.exit(1)


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
