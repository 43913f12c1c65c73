"""What every command shares: error-to-exit-code mapping, JSON output, environment lookups, progress.

Exit codes: 0 ok, 1 verification failed or refused, 2 usage or input error, 3 environment error.
The library never prints or exits; this module is where its errors become messages and exit codes.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable
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


def emit_json(doc: Any) -> None:
    click.echo(json.dumps(doc, indent=2, sort_keys=False, default=str))


def fail(err: SigneryError, *, as_json: bool = False) -> NoReturn:
    if as_json:
        emit_json({"ok": False, "error": err.to_dict()})
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
