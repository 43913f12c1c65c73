"""Install-time policy: which verification results a plugin host accepts, and why.

A :class:`Policy` is read from a TOML file and from environment values that override it. Dify's and Mattermost's
own setting names are honoured with their meaning, so an existing deployment's configuration carries over:

- ``FORCE_VERIFYING_SIGNATURE`` / ``force_verifying_signature`` (default true): refuse what does not verify;
- ``THIRD_PARTY_SIGNATURE_VERIFICATION_ENABLED`` / ``third_party_signature_verification_enabled`` (default false);
- ``THIRD_PARTY_SIGNATURE_VERIFICATION_PUBLIC_KEYS`` / ``third_party_signature_verification_public_keys``:
  comma-separated (env) or a list (TOML) of key files, trimmed; trusted for Dify packages when enabled;
- ``REQUIRE_PLUGIN_SIGNATURE`` / ``require_plugin_signature`` (Mattermost; unset by default): when set, it decides
  for Mattermost bundles instead of ``force_verifying_signature``;
- ``trust_dify_marketplace`` (TOML only, default true): trust the Dify Marketplace key for Dify packages.

Unlike the Dify daemon, a key file that cannot be read is a :class:`~signery.errors.ConfigError` raised when the
policy is loaded, before any package is judged; it never turns valid packages into "bad signature".
:func:`decide` turns a :class:`~signery.result.VerificationResult` into a :class:`Decision`; the table is in
``docs/policy.md``. The library never reads ``os.environ``: the CLI passes the environment in.

Example::

    policy = load_policy(Path("policy.toml"), env={"FORCE_VERIFYING_SIGNATURE": "false"})
    decision = decide(result, policy, kind="dify", allow_unverified=True)
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from ._internal.files import read_bounded
from ._internal.records import fields_json
from .errors import ConfigError, Reason, SigneryError
from .result import VerificationResult
from .trust import Constraints, TrustedKey, TrustSet, load_trusted_key_file

PackageKind = Literal["dify", "mattermost", "zip"]
Status = Literal["verified", "unverified"]

ENV_FORCE = "FORCE_VERIFYING_SIGNATURE"
ENV_THIRD_PARTY = "THIRD_PARTY_SIGNATURE_VERIFICATION_ENABLED"
ENV_THIRD_PARTY_KEYS = "THIRD_PARTY_SIGNATURE_VERIFICATION_PUBLIC_KEYS"
ENV_REQUIRE = "REQUIRE_PLUGIN_SIGNATURE"
ENV_VARS: tuple[str, ...] = (ENV_FORCE, ENV_THIRD_PARTY, ENV_THIRD_PARTY_KEYS, ENV_REQUIRE)

_KEYS = {
    ENV_FORCE: "force_verifying_signature",
    ENV_THIRD_PARTY: "third_party_signature_verification_enabled",
    ENV_THIRD_PARTY_KEYS: "third_party_signature_verification_public_keys",
    ENV_REQUIRE: "require_plugin_signature",
}
_TOML_ONLY = ("trust_dify_marketplace",)
MAX_POLICY_BYTES = 1 << 20  # a policy is a few lines; refuse to parse anything huge
MAX_THIRD_PARTY_KEYS = 256  # more key files than any deployment lists; bounds the work of loading them

# Go's strconv.ParseBool (what the daemon's envconfig uses), plus the yes/no/on/off people also write.
_TRUE = frozenset({"1", "t", "true", "yes", "y", "on"})
_FALSE = frozenset({"0", "f", "false", "no", "n", "off"})

# Refused whatever the policy says: an explicit statement by the administrator (revoked key, a claim beyond what
# a key may make) or input that cannot be installed safely. "Not forcing verification" means "accept packages
# whose signer we cannot vouch for", not "accept packages someone was told not to trust".
ALWAYS_REFUSED: frozenset[Reason] = frozenset(
    {Reason.REVOKED_KEY, Reason.POLICY_VIOLATION, Reason.UNSAFE_ARCHIVE, Reason.MALFORMED}
)


def _parse_bool(value: Any, *, setting: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise ConfigError(f"{setting} must be true or false, not {value!r}", subject=setting)


@dataclass(frozen=True)
class Policy:
    """What a plugin host accepts.

    Attributes:
        force_verifying_signature: refuse packages that do not verify (Dify's meaning; default true).
        third_party_enabled: also trust ``third_party_keys`` for Dify packages (Dify's meaning).
        third_party_keys: key files listed by the setting (resolved paths).
        require_plugin_signature: for Mattermost bundles, overrides ``force_verifying_signature`` when set.
        trust_dify_marketplace: trust the Dify Marketplace key for Dify packages, as the daemon always does.
        extra_trust: keys loaded from ``third_party_keys`` (empty unless third-party verification is enabled).
        sources: for each setting, where its value came from (``env``, the policy file, ``default``).
    """

    force_verifying_signature: bool = True
    third_party_enabled: bool = False
    third_party_keys: tuple[Path, ...] = ()
    require_plugin_signature: bool | None = None
    trust_dify_marketplace: bool = True
    extra_trust: TrustSet = field(default_factory=TrustSet)
    sources: Mapping[str, str] = field(default_factory=dict)

    def source_of(self, setting: str) -> str:
        """``NAME (from env)``, ``name (from FILE)`` or ``name (default)``, for messages."""
        src = self.sources.get(setting, "default")
        if src == "env":
            env = next((k for k, v in _KEYS.items() if v == setting), setting)
            return f"{env} (environment)"
        return f"{setting} ({src})" if src == "default" else f"{setting} (in {src})"

    def forced_for(self, kind: PackageKind) -> tuple[bool, str]:
        """Whether verification is forced for packages of ``kind``, and the setting that decided it."""
        if kind == "mattermost" and self.require_plugin_signature is not None:
            return self.require_plugin_signature, self.source_of("require_plugin_signature")
        return self.force_verifying_signature, self.source_of("force_verifying_signature")

    def trust_for(self, kind: PackageKind, trust: TrustSet) -> TrustSet:
        """The keys a package of ``kind`` is checked against: the trust store plus what this policy adds."""
        if kind != "dify":
            return trust
        out = trust.union(self.extra_trust)
        if self.trust_dify_marketplace:
            from .formats import default_trust

            known = {k.key_id for k in out}
            out = out.union(TrustSet(k for k in default_trust(["dify"]) if k.key_id not in known))
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "force_verifying_signature": self.force_verifying_signature,
            "third_party_signature_verification_enabled": self.third_party_enabled,
            "third_party_signature_verification_public_keys": [str(p) for p in self.third_party_keys],
            "require_plugin_signature": self.require_plugin_signature,
            "trust_dify_marketplace": self.trust_dify_marketplace,
            "sources": dict(self.sources),
        }


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        raw = read_bounded(path, MAX_POLICY_BYTES, what="policy file", error=ConfigError)
    except OSError as exc:
        raise ConfigError(f"policy file {path} cannot be read: {exc.strerror}", subject=str(path)) from None
    try:
        doc = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"policy file {path} is not valid TOML: {exc}", subject=str(path)) from None
    unknown = sorted(set(doc) - set(_KEYS.values()) - set(_TOML_ONLY))
    if unknown:
        raise ConfigError(f"policy file {path}: unknown setting {unknown[0]!r}", subject=f"{path}:{unknown[0]}")
    return doc


def load_policy(path: Path | None, *, env: Mapping[str, str] | None = None, required: bool = False) -> Policy:
    """Read the policy from ``path`` (TOML) and ``env`` (which wins), and load every configured key file.

    Args:
        path: the policy file; a missing file means the defaults unless ``required`` (``--policy FILE`` given).
        env: environment values, as the CLI read them; only :data:`ENV_VARS` are looked at. Empty values count
            as unset, as with the daemon's envconfig.

    Raises:
        ConfigError: an unreadable or invalid policy file, a bad value, or a key file that is missing,
            unreadable or not a public key (naming the file and the setting that lists it).
    """
    doc: dict[str, Any] = {}
    sources: dict[str, str] = {}
    base = Path(".")
    if path is not None:
        path = Path(path)
        if path.exists() or required:
            doc = _read_toml(path)
            base = path.parent
            sources = dict.fromkeys(doc, str(path))
    values: dict[str, Any] = dict(doc)
    for var, key in _KEYS.items():
        raw = (env or {}).get(var)
        if raw is not None and raw.strip():
            values[key] = raw
            sources[key] = "env"

    def setting(key: str) -> str:
        return next(k for k, v in _KEYS.items() if v == key) if sources.get(key) == "env" else key

    force = _parse_bool(values.get("force_verifying_signature", True), setting=setting("force_verifying_signature"))
    third = _parse_bool(
        values.get("third_party_signature_verification_enabled", False),
        setting=setting("third_party_signature_verification_enabled"),
    )
    require_raw = values.get("require_plugin_signature")
    require = None if require_raw is None else _parse_bool(require_raw, setting=setting("require_plugin_signature"))
    marketplace = _parse_bool(values.get("trust_dify_marketplace", True), setting="trust_dify_marketplace")
    keys_key = "third_party_signature_verification_public_keys"
    keys = _key_paths(
        values.get(keys_key, []), setting=setting(keys_key), base=base if sources.get(keys_key) != "env" else Path(".")
    )
    policy = Policy(
        force_verifying_signature=force,
        third_party_enabled=third,
        third_party_keys=keys,
        require_plugin_signature=require,
        trust_dify_marketplace=marketplace,
        sources=sources,
    )
    if third and keys:  # the daemon reads the key files only then; so do we, but fail loudly and early
        trusted = [_load_key(p, setting=policy.source_of(keys_key)) for p in keys]
        policy = replace(policy, extra_trust=TrustSet(trusted))
    return policy


def _key_paths(value: Any, *, setting: str, base: Path) -> tuple[Path, ...]:
    if isinstance(value, str):
        items = [p.strip() for p in value.split(",")]
    elif isinstance(value, list) and all(isinstance(p, str) for p in value):
        items = [p.strip() for p in value]
    else:
        raise ConfigError(f"{setting} must be a list of key file paths", subject=setting)
    paths = tuple(base / p for p in items if p)
    if len(paths) > MAX_THIRD_PARTY_KEYS:
        raise ConfigError(f"{setting} lists {len(paths)} key files (at most {MAX_THIRD_PARTY_KEYS})", subject=setting)
    return paths


def _load_key(path: Path, *, setting: str) -> TrustedKey:
    try:
        loaded = load_trusted_key_file(
            path, name=f"third-party:{path.name}", constraints=Constraints(formats=("dify",))
        )
    except SigneryError as exc:
        raise ConfigError(
            f"key file {path} listed in {setting} cannot be used: {exc.message}",
            subject=str(path),
            hint="fix or remove the path; no package is judged until the key configuration loads",
        ) from None
    return loaded.key


@dataclass(frozen=True)
class Decision:
    """The verdict on one package.

    Attributes:
        allow: whether to install.
        status: what an install is recorded as (``verified`` / ``unverified``); ``None`` when refused.
        reason: why it is not verified (``None`` when verified).
        message: a sentence naming the file or key at fault and, when a setting decided, the setting.
        subject: the file or key at fault.
        setting: the setting that decided, when one did.
    """

    allow: bool
    status: Status | None
    reason: Reason | None
    message: str
    subject: str | None = None
    setting: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return fields_json(self, "allow status reason message subject setting")


def decide(
    result: VerificationResult, policy: Policy, *, kind: PackageKind = "dify", allow_unverified: bool = False
) -> Decision:
    """Judge a verification result under ``policy`` (the table in ``docs/policy.md``).

    Args:
        allow_unverified: the operator accepts an unverified install (``--allow-unverified``); effective only when
            the policy does not force verification for this kind of package.
    """
    if result.verified:
        signers = ", ".join(sorted({s.key_name or s.key_id or "?" for s in result.signatures if s.valid}))
        return Decision(True, "verified", None, f"verified: signed by {signers}")
    reason = result.reason or Reason.UNSIGNED
    what = result.message
    if reason in ALWAYS_REFUSED:
        return Decision(False, None, reason, f"refused: {what}", subject=result.fault)
    forced, setting = policy.forced_for(kind)
    if forced:
        return Decision(
            False,
            None,
            reason,
            f"refused: {what}; signature verification is required by {setting}",
            subject=result.fault or result.subject,
            setting=setting,
        )
    if not allow_unverified:
        return Decision(
            False,
            None,
            reason,
            f"refused: {what}; the policy permits unverified installs, but only with --allow-unverified",
            subject=result.fault or result.subject,
            setting=setting,
        )
    return Decision(
        True, "unverified", reason, f"unverified ({reason.value}): {what}", subject=result.fault, setting=setting
    )


__all__ = [
    "ALWAYS_REFUSED",
    "ENV_VARS",
    "Decision",
    "Policy",
    "decide",
    "load_policy",
]
