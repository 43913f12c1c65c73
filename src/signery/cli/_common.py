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
