"""The one shape every signature format has: :class:`Format`, its options, and what the host and the CLI ask of it.

A format is an object (each ``signery.formats.<name>`` module exposes one as ``FORMAT``) that can sign a subject
with any :class:`~signery.keys.Signer`, verify it against a :class:`~signery.trust.TrustSet`, say cheaply whether a
subject carries its signatures, and describe them. Nothing outside ``signery.formats`` branches on a format's name:
the CLI, the host, the policy and the registry ask the format.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

from ..errors import UsageError
from ..keys import Signer
from ..result import VerificationResult
from ..trust import TrustSet

Progress = Callable[[int], None]


@dataclasses.dataclass(frozen=True)
class Options:
    """A format's signing options: a frozen dataclass, one per format, validated when constructed."""


@dataclasses.dataclass(frozen=True)
class NoOptions(Options):
    """For a format that takes no options."""


def option_flag(name: str) -> str:
    """``in_place`` -> ``--in-place``: how the CLI spells an option, for messages."""
    return "--" + name.replace("_", "-")


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


class FormatBase:
    """Defaults shared by the formats; a format overrides what it does differently."""

    name: ClassVar[str]
    summary: ClassVar[str] = ""
    embeds: ClassVar[bool] = False
    detaches: ClassVar[bool] = True
    options_type: ClassVar[type[Options]] = NoOptions
    name_claim: ClassVar[str | None] = None

    def __repr__(self) -> str:
        return f"<signery format {self.name}>"

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
            raise UsageError(
                f"the {self.name} format takes {self.options_type.__name__}, not {type(options).__name__}"
            )
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
        return []


def sidecar_exists(subject: Path, *suffixes: str) -> bool:
    """Whether ``subject`` + one of ``suffixes`` is a file (a detached signature beside it)."""
    return any(subject.with_name(subject.name + s).is_file() for s in suffixes)


def zip_with_comment(subject: Path) -> bool:
    """Whether ``subject`` may be a ZIP with a comment (where Dify keeps its signature); reads 26 bytes."""
    try:
        with Path(subject).open("rb") as fh:
            head = fh.read(4)
            size = fh.seek(0, 2)
            if size < 22 or head not in (b"PK\x03\x04", b"PK\x05\x06"):
                return False
            fh.seek(size - 22)
            tail = fh.read(22)
    except OSError:
        return False
    return not (tail[:4] == b"PK\x05\x06" and tail[20:22] == b"\x00\x00")  # a comment-less end record


__all__ = [
    "Format",
    "FormatBase",
    "NoOptions",
    "Options",
    "Progress",
    "option_flag",
    "sidecar_exists",
    "zip_with_comment",
]
