"""``signery trust``: the administrator's list of trusted keys."""

from __future__ import annotations

from pathlib import Path

import click

from ..errors import UsageError
from ._common import emit_json, group, handle_errors, json_option, trust_store_dir

trust_store_option = click.option(
    "--trust-store", type=click.Path(file_okay=False, path_type=Path), help="Directory (default $SIGNERY_HOME)."
)


@group()
def trust() -> None:
    """Manage trusted keys: who may sign what, until when.

    \b
    Examples:
      signery trust add alice.public.pem --name alice --expires 2027-12-31
      signery trust list --json
      signery trust revoke alice          # signatures by it now fail with revoked-key
    """


@trust.command("add")
@click.argument("keyfiles", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--name", help="Name for the key (one key file only). Default: from the file or the OpenPGP UID.")
@click.option("--expires", metavar="DATE", help="Stop trusting at this date (YYYY-MM-DD, UTC) or ISO time.")
@click.option("--category", "categories", multiple=True, help="Categories this key may claim (repeatable).")
@click.option("--name-pattern", "names", multiple=True, help="Package-name globs this key may sign (repeatable).")
@click.option(
    "--format",
    "formats",
    multiple=True,
    type=click.Choice(["native", "dify", "openpgp", "ocm"]),
    help="Formats this key is trusted for.",
)
@click.option("--replace", is_flag=True, help="Replace an entry with the same name or key.")
@trust_store_option
@json_option
@handle_errors
def add(
    keyfiles: tuple[Path, ...],
    name: str | None,
    expires: str | None,
    categories: tuple[str, ...],
    names: tuple[str, ...],
    formats: tuple[str, ...],
    replace: bool,
    trust_store: Path | None,
    as_json: bool,
) -> None:
    """Trust the public key(s) in KEYFILES (PEM, X.509 certificate, OpenPGP binary or armored).

    \b
    Examples:
      signery trust add alice.public.pem --name alice --expires 2027-12-31
      signery trust add acme.public.pem --name acme --category partner --name-pattern 'acme-*'
      signery trust add alice.public.asc bob.public.asc        # OpenPGP; names from the UIDs
    """
    from ..trust import Constraints, TrustStore, load_trusted_key_file, parse_expiry

    if name and len(keyfiles) > 1:
        raise UsageError("--name names one key; give one key file per `trust add --name`")
    constraints = Constraints(categories=categories, names=names, formats=formats)
    when = parse_expiry(expires) if expires else None
    loaded = [load_trusted_key_file(p, name=name, expires=when, constraints=constraints) for p in keyfiles]
    added = TrustStore(trust_store_dir(trust_store)).add(*(x.key for x in loaded), replace_existing=replace)
    if as_json:
        emit_json({"added": [k.summary() for k in added]}, message=f"trusted {', '.join(k.name for k in added)}")
        return
    for path, item in zip(keyfiles, loaded, strict=True):
        k = item.key
        note = " (private key given: only its public part was stored)" if item.dropped_secret else ""
        click.echo(f"trusted {k.name} {k.short_id} ({k.kind}) from {path}{note}")


@trust.command("list")
@trust_store_option
@json_option
@handle_errors
def list_(trust_store: Path | None, as_json: bool) -> None:
    """List trusted keys: name, key id or fingerprint, kind, expiry, constraints, UIDs.

    \b
    Examples:
      signery trust list
      signery trust list --trust-store /etc/signery --json
    """
    from ..trust import TrustStore

    keys = list(TrustStore(trust_store_dir(trust_store)).load())
    if as_json:
        emit_json({"keys": [k.summary() for k in keys]}, message=f"{len(keys)} trusted key(s)")
        return
    if not keys:
        click.echo("no trusted keys (an empty trust store trusts nothing)")
        return
    for k in keys:
        flags = []
        if k.revoked:
            flags.append("REVOKED")
        if k.expires:
            flags.append(f"expires {k.expires.date().isoformat()}")
        c = k.constraints
        for label, vals in (("categories", c.categories), ("names", c.names), ("formats", c.formats)):
            if vals:
                flags.append(f"{label}={','.join(vals)}")
        uids = f"  {'; '.join(k.uids)}" if k.uids else ""
        click.echo(f"{k.name:<20} {k.key_id}  {k.kind:<7} {' '.join(flags)}{uids}".rstrip())


@trust.command("remove")
@click.argument("idents", nargs=-1, required=True)
@trust_store_option
@json_option
@handle_errors
def remove(idents: tuple[str, ...], trust_store: Path | None, as_json: bool) -> None:
    """Stop trusting keys, by name, key id or fingerprint (unique prefix of 8+ hex digits).

    \b
    Examples:
      signery trust remove alice
      signery trust remove 5ddd18f0 bob
    """
    from ..trust import TrustStore

    gone = TrustStore(trust_store_dir(trust_store)).remove(*idents)
    if as_json:
        emit_json({"removed": [k.summary() for k in gone]}, message=f"removed {', '.join(k.name for k in gone)}")
        return
    for k in gone:
        click.echo(f"removed {k.name} {k.short_id}")


@trust.command("revoke")
@click.argument("ident")
@trust_store_option
@json_option
@handle_errors
def revoke(ident: str, trust_store: Path | None, as_json: bool) -> None:
    """Mark a key revoked: its signatures are refused as revoked-key (unlike remove, which makes them unknown).

    \b
    Examples:
      signery trust revoke alice
    """
    from ..trust import TrustStore

    k = TrustStore(trust_store_dir(trust_store)).revoke(ident)
    if as_json:
        emit_json({"revoked": k.summary()}, message=f"revoked {k.name} {k.short_id}")
    else:
        click.echo(f"revoked {k.name} {k.short_id}")
