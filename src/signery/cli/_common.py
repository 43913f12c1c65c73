"""What every command shares: error-to-exit-code mapping, JSON output, environment lookups, progress.

Exit codes: 0 ok, 1 verification failed or refused, 2 usage or input error, 3 environment error.
The library never prints or exits; this module is where its errors become messages and exit codes.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click

from ..errors import Reason, SigneryError, UsageError

EXIT_OK, EXIT_REFUSED, EXIT_USAGE, EXIT_ENV = 0, 1, 2, 3

F = TypeVar("F", bound=Callable[..., Any])

json_option = click.option("--json", "as_json", is_flag=True, help="Print one JSON document for scripts.")
quiet_option = click.option("--quiet", "-q", is_flag=True, help="No progress bar.")


def existing_file_option(*param_decls: str, help: str, multiple: bool = False) -> Callable[[F], F]:
    """An option naming a file that must exist, as a :class:`~pathlib.Path` (``multiple``: repeatable, a tuple)."""
    return click.option(
        *param_decls, multiple=multiple, type=click.Path(exists=True, dir_okay=False, path_type=Path), help=help
    )


def trust_store_option(help: str = "Trust store directory.") -> Callable[[F], F]:
    """``--trust-store DIR``, a ``trust_store: Path | None`` argument (``None``: :func:`trust_store_dir`'s default)."""
    return click.option("--trust-store", type=click.Path(file_okay=False, path_type=Path), help=help)


signature_option = existing_file_option("--signature", "-s", help="Detached signature file.")


def signery_home() -> Path:
    """``$SIGNERY_HOME``, default ``~/.config/signery``."""
    env = os.environ.get("SIGNERY_HOME")
    return Path(env).expanduser() if env else Path.home() / ".config" / "signery"


def trust_store_dir(option: str | os.PathLike[str] | None) -> Path:
    return Path(option) if option else signery_home()


def passphrase_from_env(var: str | None) -> bytes | None:
    """Read a passphrase from the environment variable named by ``--passphrase-env``."""
    if not var:
        return None
    value = os.environ.get(var)
    if value is None:
        raise UsageError(f"--passphrase-env names {var}, which is not set", subject=var)
    if not value:
        raise UsageError(f"{var} is empty; a key needs a non-empty passphrase", subject=var)
    return value.encode()


ENVELOPE = ("ok", "reason", "message")


def envelope(data: Mapping[str, Any], *, ok: bool, reason: str | None, message: str) -> dict[str, Any]:
    """The one JSON shape of every command: ``ok``, ``reason`` and ``message`` first, then the command's own data.

    ``reason`` is a :class:`~signery.errors.Reason` value when ``ok`` is false (``null`` on success); ``message``
    is the line a person would read. The command's data never overrides the three envelope members.
    """
    return {"ok": ok, "reason": reason, "message": message, **{k: v for k, v in data.items() if k not in ENVELOPE}}


def emit_json(data: Mapping[str, Any], *, message: str, ok: bool = True, reason: str | None = None) -> None:
    """Print the envelope around ``data`` (see :func:`envelope`) as one JSON document on stdout."""
    doc = envelope(data, ok=ok, reason=reason, message=message)
    click.echo(json.dumps(doc, indent=2, sort_keys=False, default=str))


def error_envelope(err: SigneryError) -> dict[str, Any]:
    """A failure as the envelope; ``error`` repeats reason, message and subject for scripts of the older shape."""
    data = {"subject": err.subject, "hint": err.hint, "error": err.to_dict()}
    return envelope(data, ok=False, reason=err.reason.value, message=err.message)


def fail(err: SigneryError, *, as_json: bool = False) -> NoReturn:
    if as_json:
        click.echo(json.dumps(error_envelope(err), indent=2, sort_keys=False, default=str))
    else:
        click.echo(f"signery: {err.diagnostics()}", err=True)
        if err.subject and err.subject not in err.message:
            click.echo(f"  at: {err.subject}", err=True)
    sys.exit(err.exit_code)


def handle_errors(fn: F) -> F:
    """Turn library errors into a message on stderr (or JSON on stdout) and the documented exit code."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        as_json = bool(kwargs.get("as_json", False))
        try:
            return fn(*args, **kwargs)
        except SigneryError as err:
            fail(err, as_json=as_json)
        except KeyboardInterrupt:
            click.echo("signery: interrupted; nothing was changed", err=True)
            sys.exit(130)
        except OSError as err:
            fail(_os_error(err), as_json=as_json)

    return wrapper  # type: ignore[return-value]


def rename_paths(err: SigneryError, renames: Callable[[str], str]) -> SigneryError:
    """``err`` with ``renames`` applied to its message, subject and hint: the CLI's way to name the user's file
    where the library names the private copy it worked on (a staging file, a download directory)."""
    err.message = renames(err.message)
    err.args = (err.message, *err.args[1:])
    err.subject = renames(err.subject) if err.subject is not None else None
    err.hint = renames(err.hint) if err.hint is not None else None
    return err


# --- usage errors -------------------------------------------------------------------------------------------------
# Click reports a bad command line (unknown option, missing argument, bad value) itself, as text on stderr. With
# --json anywhere on the line, the command classes below report it as the envelope instead (reason "malformed",
# exit 2). Every command and group of the CLI is made with them (``command``/``group`` below, and a JsonGroup's
# subcommands by inheritance); the root group in cli/__init__.py opts in by deriving from JsonGroup.

_JSON_META = "signery.json"


def _asks_json(args: Sequence[str]) -> bool:
    words = list(args)
    return "--json" in (words[: words.index("--")] if "--" in words else words)


def _usage_failure(err: click.UsageError) -> NoReturn:
    message = err.format_message()
    data: dict[str, Any] = {"subject": None, "hint": None}
    if err.ctx is not None:
        data["usage"] = err.ctx.get_usage()
        data["hint"] = f"see '{err.ctx.command_path} --help'"
    data["error"] = {"reason": "malformed", "message": message, "subject": None}
    doc = envelope(data, ok=False, reason="malformed", message=message)
    click.echo(json.dumps(doc, indent=2, sort_keys=False, default=str))
    sys.exit(EXIT_USAGE)


class _JsonUsage(click.Command):
    def make_context(
        self, info_name: str | None, args: list[str], parent: click.Context | None = None, **extra: Any
    ) -> click.Context:
        wants = _asks_json(args) or bool(parent is not None and parent.meta.get(_JSON_META))
        try:
            ctx = super().make_context(info_name, args, parent=parent, **extra)
        except click.UsageError as err:
            if wants and not isinstance(err, click.exceptions.NoArgsIsHelpError):
                _usage_failure(err)
            raise
        if wants:
            ctx.meta[_JSON_META] = True  # shared with every context below this one
        return ctx

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.UsageError as err:  # an unknown subcommand, or a callback's ctx.fail / BadParameter
            if ctx.meta.get(_JSON_META) and not isinstance(err, click.exceptions.NoArgsIsHelpError):
                _usage_failure(err)
            raise


class JsonCommand(_JsonUsage):
    """A command whose usage errors become the JSON envelope when ``--json`` is on the command line."""


class JsonGroup(_JsonUsage, click.Group):
    """A group like :class:`JsonCommand`; its subcommands and subgroups are made with the same classes."""

    command_class = JsonCommand
    group_class = type  # subgroups of the group's own class


def command(name: str | None = None, **attrs: Any) -> Callable[[Callable[..., Any]], click.Command]:
    """``click.command`` with :class:`JsonCommand`."""
    return click.command(name, cls=JsonCommand, **attrs)


def group(name: str | None = None, **attrs: Any) -> Callable[[Callable[..., Any]], JsonGroup]:
    """``click.group`` with :class:`JsonGroup`."""
    return click.group(name, cls=JsonGroup, **attrs)


def _os_error(err: OSError) -> SigneryError:
    where = err.filename or ""
    if isinstance(err, FileNotFoundError | IsADirectoryError | NotADirectoryError):
        return UsageError(f"{where}: {err.strerror}", subject=str(where) or None)
    from ..errors import EnvironmentFailure

    return EnvironmentFailure(f"{where}: {err.strerror or err}", reason=Reason.CONFIG_ERROR, subject=str(where) or None)


class Progress:
    """A byte-progress bar on stderr for long work, shown only on a terminal and only for big inputs."""

    THRESHOLD = 64 << 20  # below this the work takes well under a second; a bar would only flicker

    def __init__(self, total: int, label: str, *, quiet: bool = False) -> None:
        self._bar: Any = None
        if quiet or total < self.THRESHOLD or not sys.stderr.isatty():
            return
        from rich.progress import BarColumn, DownloadColumn, TransferSpeedColumn
        from rich.progress import Progress as RichProgress

        self._rich = RichProgress(
            "[progress.description]{task.description}",
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            transient=True,
            console=_stderr_console(),
        )
        self._rich.start()
        self._task = self._rich.add_task(label, total=total)
        self._bar = self._rich

    def advance(self, n: int) -> None:
        if self._bar is not None:
            self._rich.advance(self._task, n)

    def close(self) -> None:
        if self._bar is not None:
            self._rich.stop()
            self._bar = None


def _stderr_console() -> Any:
    from rich.console import Console

    return Console(stderr=True)


# --- passphrases ----------------------------------------------------------------------------------------------------
# A command that loads (or writes) an encrypted private key takes ``@passphrase_options``: --passphrase-env VAR and
# --passphrase-file FILE, handed to it as one ``passphrase: Passphrase`` argument. ``unlock(load, passphrase, ...)``
# runs a loader; when the library says the key needs a passphrase and none was given, it asks once on the terminal
# (never echoed) and runs the loader again, or, without a terminal, says which option to give.

_ASK_HINT = "give --passphrase-env VAR or --passphrase-file FILE, or run on a terminal to be asked"
MAX_PASSPHRASE_FILE_BYTES = 64 << 10

T = TypeVar("T")


class Passphrase:
    """Where a command's passphrase comes from: ``--passphrase-env``, ``--passphrase-file``, else the terminal.

    What was read (or typed) is kept, so that several keys of one command share one prompt.
    """

    def __init__(self, env: str | None = None, file: Path | None = None) -> None:
        self.env = env or None
        self.file = Path(file) if file is not None else None
        self._value: bytes | None = None

    @property
    def given(self) -> bool:
        """Whether --passphrase-env or --passphrase-file was given."""
        return self.env is not None or self.file is not None

    def with_default_env(self, var: str) -> Passphrase:
        """This source, or ``$var`` when neither option was given and ``var`` is set (elastic-package's variable)."""
        if self.given or not os.environ.get(var):
            return self
        return Passphrase(env=var)

    def value(self) -> bytes | None:
        """The passphrase from the options (or typed earlier), or ``None`` when there is none yet."""
        if self._value is None:
            if self.env is not None and self.file is not None:
                raise UsageError("give --passphrase-env or --passphrase-file, not both", subject="--passphrase-file")
            if self.env is not None:
                self._value = passphrase_from_env(self.env)
            elif self.file is not None:
                self._value = _passphrase_from_file(self.file)
        return self._value

    def ask(self, what: str, *, confirm: bool = False) -> bytes:
        """Ask on the terminal (not echoed); twice when ``confirm``. A usage error when stdin is no terminal."""
        if not sys.stdin.isatty():
            raise UsageError(f"{what} needs a passphrase: {_ASK_HINT}", subject=what)
        import getpass

        try:
            first = getpass.getpass(f"Passphrase for {what}: ")
            if confirm and getpass.getpass("Repeat the passphrase: ") != first:
                raise UsageError("the two passphrases differ; nothing was written", subject=what)
        except EOFError:
            raise UsageError(f"no passphrase was typed for {what}", subject=what) from None
        if not first:
            raise UsageError(f"an empty passphrase was typed for {what}; a key needs a real one", subject=what)
        self._value = first.encode()
        return self._value


def _passphrase_from_file(path: Path) -> bytes:
    """The first line of ``path`` (as gpg's --passphrase-file reads it), without its line ending."""
    from .._internal.files import read_bounded

    try:
        data = read_bounded(path, MAX_PASSPHRASE_FILE_BYTES, what="passphrase file")
    except OSError as exc:
        raise UsageError(f"--passphrase-file {path} cannot be read: {exc.strerror or exc}", subject=str(path)) from None
    line = data.split(b"\n", 1)[0].removesuffix(b"\r")
    if not line:
        raise UsageError(f"--passphrase-file {path} is empty (its first line is the passphrase)", subject=str(path))
    return line


def passphrase_options(fn: F) -> F:
    """Give a command --passphrase-env VAR and --passphrase-file FILE, passed to it as ``passphrase: Passphrase``.

    Put it between the command's options and ``@json_option``/``@handle_errors``::

        @command()
        @click.option("--key", ...)
        @passphrase_options
        @json_option
        @handle_errors
        def sign(key: str, passphrase: Passphrase, as_json: bool) -> None:
            signer = unlock(lambda pw: load_signer(key, passphrase=pw), passphrase, what=key)
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, passphrase_env: str | None = None, passphrase_file: Path | None = None, **kw: Any) -> Any:
        return fn(*args, passphrase=Passphrase(env=passphrase_env, file=passphrase_file), **kw)

    with_file = click.option(
        "--passphrase-file",
        metavar="FILE",
        type=click.Path(dir_okay=False, path_type=Path),
        help="The key's passphrase is the first line of FILE.",
    )(wrapper)
    return click.option(  # type: ignore[return-value]
        "--passphrase-env",
        metavar="VAR",
        help="The key's passphrase is in $VAR. Without either, a terminal is asked when the key is encrypted.",
    )(with_file)


def needs_passphrase(err: SigneryError) -> bool:
    """Whether ``err`` is the library saying a key is encrypted and no passphrase was given.

    keys.load_private_key says "X is encrypted; give its passphrase", openpgp "X is passphrase-protected; give its
    passphrase" (tests/cli/test_passphrase_prompt.py keeps both messages true).
    """
    return err.message.endswith("; give its passphrase")


def resolve_passphrase(
    passphrase: Passphrase, *, what: str, required: bool = False, confirm: bool = False
) -> bytes | None:
    """The passphrase for ``what``: from the options, else, when ``required``, typed on the terminal.

    ``confirm`` asks twice (a new key). Without a terminal a required passphrase is a usage error naming the options.
    """
    value = passphrase.value()
    if value is None and required:
        value = passphrase.ask(what, confirm=confirm)
    return value


def unlock(load: Callable[[bytes | None], T], passphrase: Passphrase, *, what: str) -> T:
    """``load(passphrase)``; if the key is encrypted and no passphrase was given, ask once and load again.

    ``load`` gets the passphrase from the options (or ``None``). When it raises the library's missing-passphrase
    error, the terminal is asked (once per :class:`Passphrase`) and ``load`` runs again with what was typed; without
    a terminal the error says which options to give. A wrong passphrase is the library's error, as it was.
    """
    try:
        return load(passphrase.value())
    except SigneryError as err:
        if not needs_passphrase(err) or passphrase.value() is not None:
            raise
        subject = err.subject or what
        if not sys.stdin.isatty():
            raise UsageError(f"{subject} is encrypted: {_ASK_HINT}", reason=err.reason, subject=subject) from None
        typed = passphrase.ask(subject)
    return load(typed)


def available_formats(only: Sequence[str] | None = None) -> list[str]:
    """The registry's format names (:func:`signery.formats.names`) whose modules are installed, in its order.

    ``only`` keeps those among them (a command that makes keys for some formats only).
    """
    import importlib.util

    from ..formats import FORMATS, names

    found: list[str] = []
    for name in names():
        if only is not None and name not in only:
            continue
        try:
            spec = importlib.util.find_spec(FORMATS[name])
        except (ImportError, ValueError):
            spec = None
        if spec is not None:
            found.append(name)
    return found
