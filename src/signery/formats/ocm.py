"""Open Component Model signatures as a signery :class:`~signery.formats._base.Format`.

An OCM signature lives in the component descriptor, under a name (``signatures[].name``); several coexist, and
signing under an existing name replaces only that one. The subject is a component archive (a directory or a tar,
optionally gzipped) or a common transport archive (CTF, directory form) holding any number of component versions.
The byte-level rules (normalisations, digests, media types, chains) are in :mod:`signery.ocm` and
``docs/formats/ocm.md``; this module adds what every format has: signing through any
:class:`~signery.keys.Signer`, and judging every signature against a :class:`~signery.trust.TrustSet`.

Verification judges every named signature of every component version (in a CTF, references resolve inside the
CTF, and every version must verify, or be referenced by one that does). A signature is vouched for by a trusted
PKIX key when

- the key made it (a plain ``rsa``/``rsa.pss``/Ed25519 signature, or an ``x-pem-file`` one whose leaf holds that
  key); the check's ``key_id`` is that key's id; or
- the trusted entry came from an X.509 certificate (``signery trust add root.cert.pem``, ``--key root.cert.pem``)
  and the signature's embedded chain validates up to it (at the verification time, CodeSigning, CA rules) and its
  ``issuer`` matches the leaf under either OCM convention; the check's ``key_id`` is the trusted root's, so leaves
  of one CA count as one key towards a threshold, and ``claims["signer_key_id"]`` names the leaf's key.

The trusted entry's expiry, revocation and constraints then apply as in every format (``formats``, and ``names``
against the component name). Reasons: no trusted key made it ``unknown-key``; a trusted key or chain whose
signature value does not verify ``bad-signature``; a changed blob, reference or descriptor ``tampered``; an entry
that cannot be decoded ``malformed``; a component version without signatures ``unsigned``.

Example::

    FORMAT.sign(Path("ca"), signer, options=FORMAT.options(signature_name="acme"))
    result = FORMAT.verify(Path("ca"), trust=TrustSet([trusted_key_from_public(public, name="acme")]))
"""

from __future__ import annotations

__all__ = [
    "FORMAT",
    "NAME",
    "OCMFormat",
    "OCMOptions",
    "detect",
    "inspect",
    "is_archive",
    "sign",
    "verify",
    "verify_component_version",
]

import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import MalformedError, UsageError
from ..keys import Signer, key_id
from ._base import EmbeddedFormat, Options, SignRequest, option_flag

if TYPE_CHECKING:
    from cryptography import x509


from ._ocm_verify import NAME as _NAME
from ._ocm_verify import subject_dn as _subject_dn
from ._ocm_verify import verify as _verify
from ._ocm_verify import verify_component_version as verify_component_version

NAME = _NAME
DEFAULT_SIGNATURE_NAME = "signery"
RSA_PKCS1 = "RSASSA-PKCS1-V1_5"
ED25519 = "ed25519"
SIGNING_ALGORITHMS = (RSA_PKCS1, "RSASSA-PSS", ED25519)
NORMALISATIONS = ("jsonNormalisation/v1", "jsonNormalisation/v2", "jsonNormalisation/v3", "jsonNormalisation/v4alpha1")
HASH_ALGORITHMS = {"sha256": "sha256", "sha512": "sha512", "SHA-256": "sha256", "SHA-512": "sha512"}
ISSUER_CONVENTIONS = ("subject", "issuer")
MAX_SIGNATURE_NAME = 256
MAX_CHAIN_BYTES = 1 << 20


# -- options -------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OCMOptions(Options):
    """Signing options of the OCM format (the CLI's ``--signature-name``, ``--algorithm``...).

    Attributes:
        signature_name: the signature's name; signing under an existing name replaces only that signature.
        algorithm: ``RSASSA-PKCS1-V1_5`` (OCM's default), ``RSASSA-PSS``, or ``ed25519`` (a signery extension OCM
            tools cannot verify). With an Ed25519 key, the default ``RSASSA-PKCS1-V1_5`` (which needs RSA) means
            ``ed25519``; an explicit ``RSASSA-PSS`` with an Ed25519 key is refused.
        normalisation: ``jsonNormalisation/v3`` (default), ``v1``, ``v2`` or ``v4alpha1``.
        hash_algorithm: ``sha256`` or ``sha512`` (``SHA-256``/``SHA-512`` accepted; kept as ``sha256``/``sha512``).
        chain: a PEM file with the certificate chain, leaf first (the leaf certifies the signing key); embedded in
            an ``application/x-pem-file`` signature, so a verifier needs only the root.
        issuer: the issuer DN to record (default with ``chain``: see ``issuer_convention``).
        issuer_convention: with ``chain`` and no ``issuer``, record the leaf's ``subject`` DN (legacy OCM CLI) or
            its ``issuer`` DN (OCM v2 library).
        component: ``NAME[:VERSION]``, the component version to sign inside a CTF (needed when it holds several).
        repository: transport archives to resolve component references from (besides the CTF being signed).
    """

    signature_name: str = DEFAULT_SIGNATURE_NAME
    algorithm: str = RSA_PKCS1
    normalisation: str = "jsonNormalisation/v3"
    hash_algorithm: str = "sha256"
    chain: Path | None = None
    issuer: str | None = None
    issuer_convention: str = "subject"
    component: str | None = None
    repository: tuple[Path, ...] = ()

    def __post_init__(self) -> None:
        name = self.signature_name
        if (
            not isinstance(name, str)
            or not name.strip()
            or len(name) > MAX_SIGNATURE_NAME
            or any(ord(c) < 0x20 or c == "\x7f" for c in name)
        ):
            raise UsageError(
                f"a signature name is 1 to {MAX_SIGNATURE_NAME} printable characters, not {name!r}",
                subject=option_flag("signature_name"),
            )
        _choice("algorithm", self.algorithm, SIGNING_ALGORITHMS)
        _choice("normalisation", self.normalisation, NORMALISATIONS)
        _choice("hash_algorithm", self.hash_algorithm, tuple(HASH_ALGORITHMS))
        object.__setattr__(self, "hash_algorithm", HASH_ALGORITHMS[self.hash_algorithm])
        _choice("issuer_convention", self.issuer_convention, ISSUER_CONVENTIONS)
        if self.chain is not None:
            if not isinstance(self.chain, str | Path) or not str(self.chain):
                raise UsageError(f"{option_flag('chain')} takes a PEM file", subject=option_flag("chain"))
            object.__setattr__(self, "chain", Path(self.chain))
        if self.issuer is not None and (not isinstance(self.issuer, str) or not self.issuer.strip()):
            raise UsageError(f"{option_flag('issuer')} takes a DN such as CN=acme.org,O=ACME", subject="--issuer")
        if self.component is not None:
            comp = self.component
            if not isinstance(comp, str) or not comp.partition(":")[0] or comp.endswith(":"):
                raise UsageError(
                    f"{option_flag('component')} takes NAME or NAME:VERSION, not {comp!r}", subject="--component"
                )
        repos = self.repository
        if isinstance(repos, str | Path):
            repos = (repos,)
        if not all(isinstance(r, str | Path) and str(r) for r in repos):
            raise UsageError(f"{option_flag('repository')} takes transport archive directories", subject="--repository")
        object.__setattr__(self, "repository", tuple(Path(r) for r in repos))


def _choice(field: str, value: Any, choices: Sequence[str]) -> None:
    if value not in choices:
        raise UsageError(
            f"{option_flag(field)} {value!r} is not one of {', '.join(choices)}", subject=option_flag(field)
        )


# -- signing -------------------------------------------------------------------------------------------------------


def _read_chain(path: Path) -> list[x509.Certificate]:
    from .._internal.files import read_bounded
    from ..x509 import load_pem_certificates

    try:
        data = read_bounded(path, MAX_CHAIN_BYTES, what="certificate chain")
    except FileNotFoundError:
        raise UsageError(f"certificate chain {path} does not exist", subject=str(path)) from None
    except OSError as exc:
        raise UsageError(f"certificate chain {path} cannot be read: {exc.strerror}", subject=str(path)) from None
    certs = load_pem_certificates(data, source=str(path))
    if not certs:
        raise UsageError(f"{path} holds no PEM certificate", subject=str(path))
    return certs


def _copy_archive(subject: Path, target: Path) -> None:
    """Copy the archive ``subject`` to ``target`` (signing elsewhere than in place)."""
    from .._fs import atomic_writer
    from ..ocm.archive import archive_kind

    if archive_kind(subject) is None:
        raise UsageError(
            f"{subject} is neither a component archive nor a common transport archive", subject=str(subject)
        )
    if subject.is_dir():
        if target.exists():
            raise UsageError(
                f"{target} exists; the OCM format copies a directory archive only to a new path", subject=str(target)
            )
        shutil.copytree(subject, target, symlinks=True)
        return
    if target.is_dir():
        raise UsageError(f"{target} is a directory", subject=str(target))
    with subject.open("rb") as src, atomic_writer(target) as dst:
        shutil.copyfileobj(src, dst, 1 << 20)


def _sign(subject: Path, signer: Signer, request: SignRequest) -> Path:
    """Sign the component version in ``subject`` (rewritten atomically; or a copy at ``output``); return the path.

    Digests of local resources and of referenced component versions are computed and stored first.

    Raises:
        UsageError: not an archive, an ambiguous ``component``, a key that cannot make the ``algorithm``, a chain
            whose leaf does not certify the key, a reference that cannot be resolved.
    """
    from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

    from ..ocm.archive import Repositories, open_component_version, open_repository
    from ..ocm.signing import sign_component_version

    o: OCMOptions = request.options
    target = request.target(subject)
    if target.absolute() != subject.absolute():
        _copy_archive(subject, target)
    public = signer.public_key()
    algorithm = o.algorithm
    if isinstance(public, ed25519.Ed25519PublicKey) and algorithm == RSA_PKCS1:
        algorithm = ED25519  # the default: PKCS#1 v1.5 cannot be made with an Ed25519 key
    if not isinstance(public, rsa.RSAPublicKey | ed25519.Ed25519PublicKey):
        raise UsageError(
            "OCM signatures are RSA (RSASSA-PKCS1-V1_5 or RSASSA-PSS), or signery's Ed25519 extension; "
            "this key is neither",
            subject="--key",
            hint="signery ocm keygen NAME  (an RSA key pair as OCM names them)",
        )
    if algorithm != ED25519 and not isinstance(public, rsa.RSAPublicKey):
        raise UsageError(
            f"algorithm {algorithm} needs an RSA key; this is an Ed25519 key",
            subject="--algorithm",
            hint="--algorithm ed25519 (a signery extension OCM tools cannot verify)",
        )
    cv, repo = open_component_version(target, component=o.component)
    repos = Repositories(repo, *(open_repository(p) for p in o.repository))
    sign_component_version(
        cv,
        signer,
        name=o.signature_name,
        repository=repos,
        algorithm=algorithm,
        normalisation=o.normalisation,
        hash_alg="sha512" if o.hash_algorithm == "sha512" else "sha256",
        certificates=_read_chain(o.chain) if o.chain is not None else (),
        issuer=o.issuer,
        issuer_mode="issuer" if o.issuer_convention == "issuer" else "subject",
    )
    return target


# -- detection and inspection --------------------------------------------------------------------------------------


def _detect(subject: Path, signature: Path | None) -> bool:
    """Whether ``subject`` is a component archive whose descriptor mentions signatures, or a CTF holding component
    versions (cheap: no YAML is parsed; :func:`verify` says ``unsigned`` when there are none after all)."""
    from .._internal.parse import load_json
    from ..ocm.archive import CTF_INDEX, DESCRIPTOR_FILE, MAX_INDEX_BYTES, archive_kind, tar_descriptor
    from ..ocm.descriptor import MAX_DESCRIPTOR_BYTES

    kind = archive_kind(subject)
    try:
        if kind == "directory":
            with (subject / DESCRIPTOR_FILE).open("rb") as fh:
                return b"signatures" in fh.read(MAX_DESCRIPTOR_BYTES + 1)
        if kind == "tar":
            data = tar_descriptor(subject)
            return data is not None and b"signatures" in data
        if kind == "ctf":
            with (subject / CTF_INDEX).open("rb") as fh:
                index = load_json(fh.read(MAX_INDEX_BYTES + 1), source=str(subject / CTF_INDEX), max_depth=16)
            artifacts = index.get("artifacts") if isinstance(index, dict) else None
            return isinstance(artifacts, list) and any(
                isinstance(a, dict) and str(a.get("repository", "")).startswith("component-descriptors/")
                for a in artifacts
            )
    except (OSError, MalformedError):
        return kind == "ctf"  # a broken index is still a CTF: verify reports what is wrong with it
    return False


def is_archive(subject: Path) -> bool:
    """Whether ``subject`` is a component archive (directory or tar) or a CTF directory."""
    from ..ocm.archive import archive_kind, tar_descriptor

    kind = archive_kind(Path(subject))
    return kind in ("directory", "ctf") or (kind == "tar" and tar_descriptor(Path(subject)) is not None)


def _inspect(subject: Path, signature: Path | None) -> dict[str, Any]:
    """The component versions in ``subject`` and what each signature says, without judging trust."""
    from ..ocm.archive import archive_kind, component_versions
    from ..ocm.signing import parse_signature

    versions: list[dict[str, Any]] = []
    signatures: list[dict[str, Any]] = []
    for cv, _ in component_versions(subject):
        desc = cv.descriptor
        names: list[str] = []
        for index, entry in enumerate(desc.signatures):
            claims: dict[str, Any] = {"name": desc.name, "version": desc.version, "component": desc.identity}
            kid = None
            try:
                parsed = parse_signature(entry, index=index)
            except MalformedError as err:
                label = entry.get("name") if isinstance(entry, dict) else None
                claims.update(signature=label, error=err.message)
            else:
                claims.update(parsed.claims())
                if parsed.certificates:
                    leaf = parsed.certificates[0]
                    claims["certificate"] = _subject_dn(leaf)
                    try:
                        kid = key_id(leaf.public_key())  # type: ignore[arg-type]
                    except (TypeError, ValueError):
                        kid = None
            names.append(str(claims.get("signature")))
            signatures.append({"format": NAME, "key_id": kid, "signed_at": None, "claims": claims})
        versions.append({"component": desc.identity, "name": desc.name, "version": desc.version, "signatures": names})
    return {
        "format": NAME,
        "subject": str(subject),
        "kind": archive_kind(subject),
        "component_versions": versions,
        "signatures": signatures,
    }


# -- the Format ----------------------------------------------------------------------------------------------------


class OCMFormat(EmbeddedFormat):
    """Open Component Model signatures: named, in the component descriptor of a component archive or CTF."""

    name = NAME
    summary = "OCM component-version signatures (named, in the component descriptor), signed in place"
    options_type = OCMOptions
    name_claim = "name"
    ed25519_caution = (
        "an Ed25519 key makes an ed25519 OCM signature, a signery extension: OCM tools cannot verify it "
        "(use an RSA key for OCM interoperability: signery ocm keygen NAME)"
    )

    def may_carry(self, subject: Path) -> bool:
        from ..ocm.archive import archive_kind

        return archive_kind(Path(subject)) is not None

    def default_output(self, subject: Path, options: Options) -> Path:
        return Path(subject)

    def merges_into(self, subject: Path, target: Path, options: Options) -> bool:
        # Signing in place keeps every other named signature (one of the same name is replaced).
        return Path(target).absolute() == Path(subject).absolute()

    def suits(self, subject: Path, signer: Signer) -> bool:
        return is_archive(Path(subject))


FORMAT = OCMFormat(_sign, _verify, _detect, _inspect)
sign, verify, detect, inspect = FORMAT.sign_kw, FORMAT.verify, FORMAT.detect, FORMAT.inspect
