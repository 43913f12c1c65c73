"""``signery install``: verify a plugin under the host policy and install it atomically.

The policy comes from ``--policy FILE`` (default ``$SIGNERY_HOME/policy.toml``) and the environment
(``FORCE_VERIFYING_SIGNATURE``, ``THIRD_PARTY_SIGNATURE_VERIFICATION_*``, ``REQUIRE_PLUGIN_SIGNATURE``), which wins.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import click

from ..errors import SigneryError, UsageError
from ._common import (
    Progress,
    command,
    emit_json,
    existing_file_option,
    handle_errors,
    json_option,
    rename_paths,
    signery_home,
    trust_store_dir,
    trust_store_option,
)

T = TypeVar("T")

_PLUGINS_DIR = click.option(
    "--plugins-dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory holding the installed plugins.",
)
_POLICY = click.option(
    "--policy",
    "policy_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Policy file (TOML). Default: $SIGNERY_HOME/policy.toml; environment variables override it.",
)
_TRUST_STORE = trust_store_option()


def load_host_policy(policy_file: Path | None) -> Any:
    """The policy from the file and this process's environment (the library never reads os.environ itself)."""
    from ..policy import ENV_VARS, load_policy

    env = {k: os.environ[k] for k in ENV_VARS if k in os.environ}
    path = policy_file if policy_file is not None else signery_home() / "policy.toml"
    return load_policy(path, env=env, required=policy_file is not None)


def load_host_trust(trust_store: Path | None) -> Any:
    from ..trust import TrustStore

    return TrustStore(trust_store_dir(trust_store)).load()


def _split_spec(spec: str) -> tuple[str, str | None]:
    name, _, version = spec.partition("@")
    if not name:
        raise UsageError(f"{spec!r} names no package; use NAME or NAME@VERSION", subject=spec)
    return name, version or None


# The host stages the package and its signatures in DIR/.signery/staging-XXXX/ (as NAME or "package", and as
# signature-N.EXT) and verifies the copies; an error raised there may name a copy. The user gave other paths.
_STAGED = re.compile(r"(?:[^\s'\"]*/)?\.signery/staging-[^/\s'\"]+/(?P<file>[^\s'\":]+)")


def _user_paths(
    fn: Callable[..., T],
    names: dict[str, str],
    *,
    package: Path | None = None,
    signatures: Sequence[Path] = (),
) -> Callable[..., T]:
    """``fn`` whose errors name the user's files: ``names`` maps private paths (prefixes) to what the user gave,
    and a staged copy of the package or of a signature becomes ``package`` or that signature."""

    def user_path(match: re.Match[str]) -> str:
        sig = re.fullmatch(r"signature-(\d+)(\.\w+)?", match["file"])
        if sig is not None:
            index = int(sig[1])
            if index < len(signatures):
                return str(signatures[index])
            if package is not None and not signatures:  # found beside the package: PACKAGE.sig or PACKAGE.asc
                return f"{package}{sig[2] or '.sig'}"
        if package is not None:
            return str(package)
        return match[0]

    def rename(text: str) -> str:
        text = _STAGED.sub(user_path, text)
        for private, public in sorted(names.items(), key=lambda kv: -len(kv[0])):  # longest first
            text = text.replace(private, public)
        return text

    def call(*args: Any, **kwargs: Any) -> T:
        try:
            return fn(*args, **kwargs)
        except SigneryError as err:
            raise rename_paths(err, rename) from err.__cause__

    return call


def fetch_with_progress(registry: str, name: str, version: str | None, dest_dir: Path) -> Any:
    """``fetch_package``, with a progress bar that moves as the package and its signatures arrive.

    When an index key is trusted for ``registry`` (``signery registry trust-index``), its signed index is checked
    first (not older than the last seen, not expired, signed by that key), the version is resolved from it, and
    what the registry announces must be what it lists (else ``tampered``): nothing is downloaded otherwise.
    """
    from ..registry.client import RegistryClient, download_size
    from ..registry.signed_index import RegistryTrust, check_against, fetch_signed_index

    state = RegistryTrust(signery_home(), registry)
    with RegistryClient(registry) as client:
        signed = state.check(fetch_signed_index(client)) if state.keys else None
        if signed is not None and version is None:
            version = signed.find(name, None).version
        index = client.version(name, version)
        if signed is not None:
            check_against(signed, index)
        bar = Progress(download_size(index), f"fetch {index.ref}")
        try:
            return client.fetch_index(index, dest_dir, progress=bar.advance)
        finally:
            bar.close()


def describe(record: Any) -> str:
    who = f"{record.signer_key_name} ({(record.signer_key_id or '')[:16]})" if record.signer_key_id else ""
    if record.status == "verified":
        return f"installed {record.name} {record.version}: verified, signed by {who}"
    return f"installed {record.name} {record.version}: UNVERIFIED ({record.reason}): {record.message}"


@command()
@click.argument("package")
@_PLUGINS_DIR
@click.option("--allow-unverified", is_flag=True, help="Accept an unverified install if the policy permits it.")
@click.option("--allow-downgrade", is_flag=True, help="Install a version lower than the one installed.")
@_POLICY
@_TRUST_STORE
@click.option("--registry", metavar="URL", help="Fetch NAME[@VERSION] from this registry (never trusted).")
@click.option(
    "--from",
    "bundle",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Take NAME[@VERSION] from a mirror bundle (air-gapped).",
)
@existing_file_option(
    "--index-key",
    "index_keys",
    multiple=True,
    help="With --from: the bundle's signed index must be signed by this registry index key (PEM); repeatable.",
)
@existing_file_option(
    "--signature",
    "-s",
    "signatures",
    multiple=True,
    help="Detached signature (repeatable). Default for .tar.gz: PACKAGE.sig or PACKAGE.asc beside it.",
)
@json_option
@handle_errors
def install(
    package: str,
    plugins_dir: Path,
    allow_unverified: bool,
    allow_downgrade: bool,
    policy_file: Path | None,
    trust_store: Path | None,
    registry: str | None,
    bundle: Path | None,
    index_keys: tuple[Path, ...],
    signatures: tuple[Path, ...],
    as_json: bool,
) -> None:
    """Install PACKAGE (a file) or NAME[@VERSION] (with --registry or --from) into --plugins-dir.

    \b
    Examples:
      signery install hello.signed.difypkg --plugins-dir plugins
      signery install demo-0.1.0.tar.gz --plugins-dir plugins          # demo-0.1.0.tar.gz.sig beside it
      signery install hello@1.2.0 --registry http://127.0.0.1:8080 --plugins-dir plugins

    An unsigned plugin installs only where the policy allows it (FORCE_VERIFYING_SIGNATURE=false) and with
    --allow-unverified.

    Exit codes: 0 installed, 1 refused (the reason and the file or key at fault are printed),
    2 bad input, 3 configuration error (e.g. a key file listed in the policy cannot be read).
    """
    from ..host.install import install_package

    if registry and bundle:
        raise UsageError("give --registry or --from, not both")
    if index_keys and not bundle:
        raise UsageError("--index-key checks a bundle's signed index: give --from BUNDLE", subject="--index-key")
    policy = load_host_policy(policy_file)  # a broken key configuration stops here, before any package is judged
    trust = load_host_trust(trust_store)
    options: dict[str, Any] = {
        "plugins_dir": plugins_dir,
        "policy": policy,
        "trust": trust,
        "allow_unverified": allow_unverified,
        "allow_downgrade": allow_downgrade,
    }
    if registry or bundle:
        name, version = _split_spec(package)
        with tempfile.TemporaryDirectory(prefix="signery-fetch-") as tmp:
            if registry:
                fetched = _user_paths(fetch_with_progress, {tmp: f"{registry.rstrip('/')}/{name}"})(
                    registry, name, version, Path(tmp)
                )
                source = f"{registry.rstrip('/')}/{fetched.name}@{fetched.version}"
            else:
                from ..keys import load_public_key_file
                from ..registry.mirror import open_bundle

                assert bundle is not None
                keys = [load_public_key_file(k) for k in index_keys]
                fetched = _user_paths(open_bundle, {tmp: f"{bundle}:{name}"})(
                    bundle, name, version, Path(tmp), index_keys=keys
                )
                source = f"{bundle}:{fetched.name}@{fetched.version}"
            # Errors name what the user asked for (registry/NAME@VERSION, BUNDLE:NAME@VERSION), not the download.
            names = {str(fetched.path): source, tmp: source.rpartition("@")[0]}
            record = _user_paths(install_package, names, signatures=[*fetched.signatures, *signatures])(
                fetched.path,
                signatures=[*fetched.signatures, *signatures],
                expected_name=fetched.name,  # a registry or bundle must not pass another signed plugin off as this
                expected_version=fetched.version,
                source=source,
                **options,
            )
    else:
        path = Path(package)
        if not path.is_file():
            raise UsageError(
                f"{package} is not a file",
                subject=package,
                hint="to install by name, add --registry URL or --from BUNDLE",
            )
        record = _user_paths(install_package, {}, package=path, signatures=signatures)(
            path, signatures=list(signatures), **options
        )
    if as_json:
        emit_json({"record": record.to_dict(with_files=False)}, message=describe(record))
    else:
        click.echo(describe(record))
