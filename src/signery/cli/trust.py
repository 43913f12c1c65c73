"""``signery trust``: the administrator's list of trusted keys.

A key is named on the command line as :meth:`signery.trust.TrustedKey.matches` takes it: its name, or its
fingerprint / key id in any case, with or without spaces and ``0x`` (gpg's ``ABCD 1234 ...``), an OpenPGP key's
long key id (the last 16 hex digits of its fingerprint), or a unique prefix of 16+ hex digits.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from ..errors import UsageError
from ._common import (
    Passphrase,
    available_formats,
    emit_json,
    group,
    handle_errors,
    json_option,
    passphrase_options,
    trust_store_dir,
    trust_store_option,
    unlock,
)

if TYPE_CHECKING:
    from ..trust import LoadedKey, TrustedKey

STORE_HELP = "Directory (default $SIGNERY_HOME)."
IDENT_HELP = "a name, a fingerprint (spaces and 0x allowed), an OpenPGP long key id, or a 16+ hex-digit prefix"


@group()
def trust() -> None:
    """Manage trusted keys: who may sign what, until when.

    Keys are named by name, fingerprint (as gpg prints it, spaces and all), OpenPGP long key id (the last 16 hex
    digits of the fingerprint) or a unique prefix of 16+ hex digits of the key id.

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
    type=click.Choice(available_formats()),
    help="Formats this key is trusted for (repeatable; default: all).",
)
@click.option(
    "--replace",
    is_flag=True,
    help="Replace an entry with the same name or key (a revoked key stays revoked: see `trust unrevoke`).",
)
@click.option("--force", is_flag=True, help="Add a key even though its expiry has passed.")
@passphrase_options
@trust_store_option(STORE_HELP)
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
    force: bool,
    passphrase: Passphrase,
    trust_store: Path | None,
    as_json: bool,
) -> None:
    """Trust the public key(s) in KEYFILES (PEM, X.509 certificate, OpenPGP binary or armored).

    A private key is accepted and only its public part stored (an encrypted PEM key needs its passphrase: the
    options, or a terminal to be asked). Adding a key that is trusted already under that name changes nothing; a
    taken name, or the same key under another name or with other settings, needs --replace.

    \b
    Examples:
      signery trust add alice.public.pem --name alice --expires 2027-12-31
      signery trust add acme.public.pem --name acme --category partner --name-pattern 'acme-*'
      signery trust add alice.public.asc bob.public.asc        # OpenPGP; names from the UIDs
    """
    from ..trust import Constraints, TrustStore, load_trusted_key_file, parse_expiry

    if name and len(keyfiles) > 1:
        raise UsageError("--name names one key; give one key file per `trust add --name`", subject="--name")
    constraints = Constraints(categories=categories, names=names, formats=formats)
    when = parse_expiry(expires) if expires else None

    def read(path: Path) -> LoadedKey:
        return unlock(
            lambda pw: load_trusted_key_file(path, name=name, expires=when, constraints=constraints, passphrase=pw),
            passphrase,
            what=str(path),
        )

    loaded = [read(p) for p in keyfiles]
    outcomes = TrustStore(trust_store_dir(trust_store)).add_loaded(
        loaded, replace_existing=replace, allow_expired=force
    )
    changed = [o for o in outcomes if o.action != "unchanged"]
    same = [o for o in outcomes if o.action == "unchanged"]
    parts = []
    if changed:
        parts.append(f"trusted {', '.join(o.key.name for o in changed)}")
    if same:
        parts.append(f"already trusted, nothing changed: {', '.join(o.key.name for o in same)}")
    message = "; ".join(parts)
    if as_json:
        data = {
            "added": [o.key.summary() for o in changed],
            "unchanged": [o.key.summary() for o in same],
            "results": [
                {
                    "name": o.key.name,
                    "key_id": o.key.key_id,
                    "short_id": o.key.short_id,
                    "source": o.source,
                    "action": o.action,
                    "replaced": [r.name for r in o.replaced],
                    "note": o.note,
                }
                for o in outcomes
            ],
        }
        emit_json(data, message=message)
        return
    for item, o in zip(loaded, outcomes, strict=True):
        k = o.key
        notes = [o.note] if o.note else []
        if item.dropped_secret and o.action != "unchanged":
            notes.append("private key given: only its public part was stored")
        if o.replaced:
            notes.append(f"replaced {', '.join(f'{r.name} {r.short_id}' for r in o.replaced)}")
        note = f" ({'; '.join(notes)})" if notes else ""
        if o.action == "unchanged":
            click.echo(f"already trusted: {k.name} {k.short_id} ({k.kind}) from {o.source}; nothing changed{note}")
        else:
            click.echo(f"trusted {k.name} {k.short_id} ({k.kind}) from {o.source}{note}")


@trust.command("list")
@trust_store_option(STORE_HELP)
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


@trust.command("show")
@click.argument("ident")
@click.option("--export", is_flag=True, help="Print only the key's public material (PEM or armored OpenPGP).")
@trust_store_option(STORE_HELP)
@json_option
@handle_errors
def show(ident: str, export: bool, trust_store: Path | None, as_json: bool) -> None:
    """Show one trusted key: IDENT is a name, a fingerprint (spaces and 0x allowed), a long key id or a prefix.

    \b
    Examples:
      signery trust show alice
      signery trust show "ABCD 1234 5678 9ABC DEF0  1234 5678 9ABC DEF0 1234"
      signery trust show 0x56789ABCDEF01234 --export > alice.public.asc
    """
    from ..trust import TrustStore

    k = TrustStore(trust_store_dir(trust_store)).load().resolve(ident)
    if as_json:
        data = {"key": k.summary(), **({"material": k.material} if export else {})}
        emit_json(data, message=f"{k.name} {k.short_id} ({k.kind})")
        return
    if export:
        click.echo(k.material.rstrip("\n"))
        return
    for label, value in _describe(k):
        click.echo(f"{label + ':':<12} {value}")


def _describe(k: TrustedKey) -> list[tuple[str, str]]:
    rows = [("name", k.name), ("kind", k.kind)]
    if k.kind == "openpgp":
        rows += [("fingerprint", k.key_id), ("key id", k.short_id)]
    else:
        rows += [("key id", k.key_id)]
    rows.append(("status", "REVOKED" if k.revoked else "trusted"))
    rows.append(("added", k.added_at.isoformat()))
    rows.append(("expires", k.expires.isoformat() if k.expires else "never"))
    c = k.constraints
    for label, vals in (("categories", c.categories), ("names", c.names), ("formats", c.formats)):
        rows.append((label, ", ".join(vals) if vals else "any"))
    rows += [("uid", u) for u in k.uids]
    rows += [("subkey", s) for s in k.subkey_ids]
    return rows


@trust.command("remove")
@click.argument("idents", nargs=-1, required=True)
@trust_store_option(STORE_HELP)
@json_option
@handle_errors
def remove(idents: tuple[str, ...], trust_store: Path | None, as_json: bool) -> None:
    """Stop trusting keys, by name, fingerprint, long key id or a unique prefix of 16+ hex digits.

    \b
    Examples:
      signery trust remove alice
      signery trust remove 0x5DDD18F0A1B2C3D4 bob
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
@trust_store_option(STORE_HELP)
@json_option
@handle_errors
def revoke(ident: str, trust_store: Path | None, as_json: bool) -> None:
    """Mark a key revoked: its signatures are refused as revoked-key (unlike remove, which makes them unknown).

    \b
    Examples:
      signery trust revoke alice
    """
    _set_revoked(ident, trust_store, as_json, revoked=True)


@trust.command("unrevoke")
@click.argument("ident")
@trust_store_option(STORE_HELP)
@json_option
@handle_errors
def unrevoke(ident: str, trust_store: Path | None, as_json: bool) -> None:
    """Trust a revoked key again (not one whose own OpenPGP certificate revokes it).

    \b
    Examples:
      signery trust unrevoke alice
    """
    _set_revoked(ident, trust_store, as_json, revoked=False)


def _set_revoked(ident: str, trust_store: Path | None, as_json: bool, *, revoked: bool) -> None:
    from ..trust import TrustStore

    store = TrustStore(trust_store_dir(trust_store))
    before = store.load().resolve(ident)
    k = store.revoke(ident) if revoked else store.unrevoke(ident)
    verb = "revoked" if revoked else "unrevoked"
    if before.revoked == revoked:
        message = f"{k.name} {k.short_id} is {'revoked already' if revoked else 'not revoked'}; nothing changed"
    else:
        message = f"{verb} {k.name} {k.short_id}"
    if as_json:
        emit_json({verb: k.summary(), "changed": before.revoked != revoked}, message=message)
    else:
        click.echo(message)
