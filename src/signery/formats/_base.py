"""The one shape every signature format has: :class:`Format`, its options, and what the host and the CLI ask of it.

A format is an object (each ``signery.formats.<name>`` module exposes one as ``FORMAT``) that can sign a subject
with any :class:`~signery.keys.Signer`, verify it against a :class:`~signery.trust.TrustSet`, say cheaply whether a
subject carries its signatures, and describe them. Nothing outside ``signery.formats`` branches on a format's name:
the CLI, the host, the policy and the registry ask the format.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

from ..errors import UsageError
from ..keys import Signer
from ..result import SignatureCheck, VerificationResult
from ..trust import TrustSet

Progress = Callable[[int], None]


@dataclasses.dataclass(frozen=True)
class Options:
    """A format's signing options: a frozen dataclass, one per format, validated when constructed."""


@dataclasses.dataclass(frozen=True)
class NoOptions(Options):
    """For a format that takes no options."""


_SPELLED = {"claims": "--claim"}  # repeatable flags are singular on the command line


def option_flag(name: str) -> str:
    """``in_place`` -> ``--in-place``: how the CLI spells an option, for messages."""
    return _SPELLED.get(name) or "--" + name.replace("_", "-")


@runtime_checkable
class Format(Protocol):
    """What every signature format provides.

    Attributes:
        name: ``native``, ``dify``, ``openpgp``, ``ocm``...
        summary: one line for ``--help``.
        embeds: its signatures can live inside the subject (a ZIP entry, a ZIP comment, a descriptor).
        detaches: its signatures can live in a file of their own, given as ``signature=``.
        options_type: the frozen dataclass of its signing options.
        name_claim: the signed claim that names the package, or ``None``. A host installing plugin ``P`` refuses a
            signature of this format whose claim says another name: trust constraints on names are checked
            against that claim, so a key limited to ``acme-*`` must not vouch for ``evil`` by claiming ``acme-x``.
    """

    name: str
    summary: str
    embeds: bool
    detaches: bool
    options_type: type[Options]
    name_claim: str | None

    def options(self, given: Mapping[str, Any] | None = None, **more: Any) -> Options:
        """This format's options from keyword values (a usage error names one it does not take)."""
        ...

    def prepare(self, signer: Signer, options: Options) -> Signer:
        """``signer`` as this format signs with it (OpenPGP binds it to its certificate); a usage error if it cannot."""
        ...

    def sign(
        self,
        subject: Path,
        signer: Signer,
        *,
        output: Path | None = None,
        options: Options | None = None,
        now: datetime | None = None,
        progress: Progress | None = None,
    ) -> Path:
        """Write the signed artifact or the detached signature atomically; return its path."""
        ...

    def verify(
        self,
        subject: Path,
        *,
        trust: TrustSet,
        signature: Path | None = None,
        threshold: int = 1,
        now: datetime | None = None,
        progress: Progress | None = None,
    ) -> VerificationResult:
        """Judge every signature of this format on ``subject``; never a bare bool."""
        ...

    def may_carry(self, subject: Path) -> bool:
        """A cheap file-level precondition (no imports, a few bytes read) for :meth:`detect`."""
        ...

    def detect(self, subject: Path, *, signature: Path | None = None) -> bool:
        """Whether ``subject`` (or the detached ``signature``) carries a signature of this format; cheap."""
        ...

    def inspect(self, subject: Path, *, signature: Path | None = None) -> dict[str, Any]:
        """What the signatures say, without judging trust."""
        ...

    def detached_beside(self, subject: Path) -> Path | None:
        """The detached signature file of this format lying beside ``subject``, if there is one."""
        ...

    def default_trust(self) -> TrustSet:
        """Keys this format trusts out of the box (Dify's marketplace key), each constrained to this format."""
        ...

    def default_output(self, subject: Path, options: Options) -> Path:
        """Where :meth:`sign` writes when not told."""
        ...

    def merges_into(self, subject: Path, target: Path, options: Options) -> bool:
        """Whether signing into an existing ``target`` keeps what it holds (a countersignature, not an overwrite)."""
        ...

    def suits(self, subject: Path, signer: Signer) -> bool:
        """Whether this format is the natural choice for ``subject`` signed by ``signer`` (format inference)."""
        ...

    def identity(self, signer: Signer) -> str:
        """How a signature of this format names ``signer``'s key (signery key id, OpenPGP fingerprint...)."""
        ...

    def cautions(self, signer: Signer) -> list[str]:
        """Warnings worth printing before signing (a key type some verifiers of this format cannot read)."""
        ...


@dataclasses.dataclass(frozen=True)
class SignRequest:
    """What a format's signing job gets besides the subject and the (prepared) signer.

    Attributes:
        options: the format's :class:`Options`, validated.
        output: where to write, or ``None`` for the format's default.
        now: the signing time (``None``: the time now).
        progress: told the bytes of the subject read so far (increments).
    """

    options: Any
    output: Path | None = None
    now: datetime | None = None
    progress: Progress | None = None

    def target(self, default: Path) -> Path:
        """``output`` when given, else ``default``."""
        return Path(self.output) if self.output is not None else default


@dataclasses.dataclass(frozen=True)
class VerifyRequest:
    """What a format's verification job gets besides the subject: the protocol's ``verify`` keywords, once.

    ``now`` is resolved (the time now when the caller gave none), so every check of one verification judges
    expiry at the same instant.
    """

    trust: TrustSet
    signature: Path | None = None
    threshold: int = 1
    now: datetime = dataclasses.field(default_factory=lambda: datetime.now(UTC))
    progress: Progress | None = None

    def result(self, subject: Path | str, *checks: SignatureCheck) -> VerificationResult:
        """The verdict on ``subject`` from ``checks`` (none: ``unsigned``) at this request's threshold."""
        return VerificationResult(str(subject), checks, threshold=self.threshold)

    def unsigned(self, subject: Path) -> VerificationResult:
        """No signature of this format on ``subject``: ``unsigned``, once the subject is known to exist."""
        if not Path(subject).is_file():
            raise UsageError(f"{subject} does not exist", subject=str(subject))
        return self.result(subject)


SignJob = Callable[[Path, Signer, SignRequest], Path]
VerifyJob = Callable[..., VerificationResult]  # (subject, VerifyRequest, **format-specific keywords)
DetectJob = Callable[[Path, "Path | None"], bool]
InspectJob = Callable[[Path, "Path | None"], dict[str, Any]]


class FormatBase:
    """The protocol's plumbing, once: a format hands over its jobs and overrides what it does differently.

    A format module writes its jobs as plain functions and gives them to the constructor:
    ``sign(subject, signer, SignRequest)``, ``verify(subject, VerifyRequest)``, ``detect(subject, signature)`` and
    ``inspect(subject, signature)``. The module's public functions are this object's methods
    (``verify = FORMAT.verify``; ``sign = FORMAT.sign_kw``, which takes the options as keywords).
    """

    name: ClassVar[str]
    summary: ClassVar[str] = ""
    embeds: ClassVar[bool] = False
    detaches: ClassVar[bool] = True
    options_type: ClassVar[type[Options]] = NoOptions
    name_claim: ClassVar[str | None] = None
    ed25519_caution: ClassVar[str | None] = None  # what :meth:`cautions` says before signing with an Ed25519 key

    def __init__(self, sign: SignJob, verify: VerifyJob, detect: DetectJob, inspect: InspectJob) -> None:
        self.sign_with, self.verify_with, self.detect_with, self.inspect_with = sign, verify, detect, inspect

    def __repr__(self) -> str:
        return f"<signery format {self.name}>"

    def sign(
        self,
        subject: Path,
        signer: Signer,
        *,
        output: Path | None = None,
        options: Options | None = None,
        now: datetime | None = None,
        progress: Progress | None = None,
    ) -> Path:
        opts = self._options(options)
        key = self.prepare(signer, opts)
        return self.sign_with(Path(subject), key, SignRequest(opts, output, now, progress))

    def sign_kw(self, subject: Path, signer: Signer, *, options: Options | None = None, **given: Any) -> Path:
        """:meth:`sign` with the options as keywords besides ``output``, ``now`` and ``progress`` (what a format
        module's ``sign`` is: ``dify.sign(path, signer, category="partner")``)."""
        protocol = {k: given.pop(k) for k in ("output", "now", "progress") if k in given}
        if options is not None and given:
            raise UsageError(f"give the {self.name} options as options= or as keywords, not both")
        return self.sign(subject, signer, options=options or self.options(given), **protocol)

    def verify(
        self,
        subject: Path,
        *,
        trust: TrustSet,
        signature: Path | None = None,
        threshold: int = 1,
        now: datetime | None = None,
        progress: Progress | None = None,
        **more: Any,
    ) -> VerificationResult:
        """Judge every signature of this format on ``subject``; ``more`` are a format's own keywords (OCM's)."""
        request = VerifyRequest(trust, signature, threshold, now or datetime.now(UTC), progress)
        return self.verify_with(Path(subject), request, **more)

    def detect(self, subject: Path, *, signature: Path | None = None) -> bool:
        if signature is not None and not self.detaches:
            return False  # a detached file is never a signature of a format that only embeds
        return self.detect_with(Path(subject), signature)

    def inspect(self, subject: Path, *, signature: Path | None = None) -> dict[str, Any]:
        return self.inspect_with(Path(subject), signature)

    def inspected(
        self, subject: Path, signatures: list[dict[str, Any]], *, signature: Path | None = None, **fields: Any
    ) -> dict[str, Any]:
        """An ``inspect`` answer: format, subject, the signature file (``None``: none found), ``fields``, the
        signatures."""
        found = {"signature": str(signature) if signature is not None else None}
        return {"format": self.name, "subject": str(subject), **found, **fields, "signatures": signatures}

    def options(self, given: Mapping[str, Any] | None = None, **more: Any) -> Options:
        """This format's options from keyword values; an option it does not take is a usage error naming it."""
        values = {**(given or {}), **more}
        fields = {f.name for f in dataclasses.fields(self.options_type)}
        unknown = sorted(set(values) - fields)
        if unknown:
            takes = ", ".join(sorted(fields)) or "no options"
            raise UsageError(
                f"{', '.join(f'{u} ({option_flag(u)})' for u in unknown)} does not apply to the {self.name} format "
                f"(it takes {takes})",
                subject=unknown[0],
            )
        return self.options_type(**values)

    def _options(self, options: Options | None) -> Any:
        if options is None:
            return self.options_type()
        if not isinstance(options, self.options_type):
            raise UsageError(f"the {self.name} format takes {self.options_type.__name__}, not {type(options).__name__}")
        return options

    def prepare(self, signer: Signer, options: Options) -> Signer:
        return signer

    def may_carry(self, subject: Path) -> bool:
        return True

    def detached_beside(self, subject: Path) -> Path | None:
        return None

    def default_trust(self) -> TrustSet:
        return TrustSet()

    def merges_into(self, subject: Path, target: Path, options: Options) -> bool:
        return False

    def suits(self, subject: Path, signer: Signer) -> bool:
        return False

    def identity(self, signer: Signer) -> str:
        return signer.key_id

    def cautions(self, signer: Signer) -> list[str]:
        from cryptography.hazmat.primitives.asymmetric import ed25519

        if self.ed25519_caution and isinstance(signer.public_key(), ed25519.Ed25519PublicKey):
            return [self.ed25519_caution]
        return []


class SignatureFileFormat(FormatBase):
    """A format whose signatures of a subject sit in one file of their own, which :meth:`signature_file` finds.

    Its detect job gets that file, its inspect job the subject and that file; when no file is found, detect is
    ``False`` and inspect the answer with no signatures, here, once.
    """

    def __init__(
        self,
        sign: SignJob,
        verify: VerifyJob,
        detect: Callable[[Path], bool],
        inspect: Callable[[Path, Path], dict[str, Any]],
    ) -> None:
        super().__init__(sign, verify, self._detect_file, self._inspect_file)
        self.detect_file_with, self.inspect_file_with = detect, inspect

    def signature_file(self, subject: Path, signature: Path | None) -> Path | None:
        """The signature file of ``subject`` (``signature`` when given), or ``None``: none found."""
        raise NotImplementedError

    def _detect_file(self, subject: Path, signature: Path | None) -> bool:
        path = self.signature_file(subject, signature)
        return path is not None and self.detect_file_with(path)

    def _inspect_file(self, subject: Path, signature: Path | None) -> dict[str, Any]:
        path = self.signature_file(subject, signature)
        return self.inspected(subject, []) if path is None else self.inspect_file_with(subject, path)


class EmbeddedFormat(FormatBase):
    """A format whose signatures live inside the subject only (never in a file of their own)."""

    embeds: ClassVar[bool] = True
    detaches: ClassVar[bool] = False


def beside(subject: Path, suffix: str) -> Path:
    """``subject`` + ``suffix``, in the same folder (``X`` -> ``X.sig``)."""
    subject = Path(subject)
    return subject.with_name(subject.name + suffix)


def first_beside(subject: Path, suffixes: Iterable[str]) -> Path | None:
    """The first ``subject`` + suffix that is a file (a detached signature beside it), or ``None``."""
    return next((p for p in (beside(subject, s) for s in suffixes) if p.is_file()), None)


def sidecar_exists(subject: Path, *suffixes: str) -> bool:
    """Whether ``subject`` + one of ``suffixes`` is a file (a detached signature beside it)."""
    return first_beside(subject, suffixes) is not None


__all__ = [
    "EmbeddedFormat",
    "Format",
    "FormatBase",
    "NoOptions",
    "Options",
    "Progress",
    "SignRequest",
    "VerifyRequest",
    "beside",
    "first_beside",
    "option_flag",
    "sidecar_exists",
]
