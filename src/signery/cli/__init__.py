"""The ``signery`` command line: a thin layer over the library.

Subcommands are imported only when run (a lazy group), so ``signery verify`` starts fast. A server command
whose extra is not installed says so and exits 3 (see :data:`NEEDS_EXTRA`).
"""

from __future__ import annotations

import gc
import importlib
import sys
from typing import Any, NoReturn

import click

from ._common import JsonGroup

# name -> "module:attribute". Each command group lives in its own module under signery.cli.
COMMANDS: dict[str, str] = {
    "keygen": "signery.cli.keys:keygen",
    "sign": "signery.cli.sign:sign",
    "verify": "signery.cli.verify:verify",
    "inspect": "signery.cli.verify:inspect",
    "trust": "signery.cli.trust:trust",
    "server": "signery.cli.server:server",
    "remote": "signery.cli.remote:remote",
    "registry": "signery.cli.registry:registry",
    "publish": "signery.cli.publish:publish",
    "search": "signery.cli.publish:search",
    "mirror": "signery.cli.mirror:mirror",
    "ocm": "signery.cli.ocm:ocm",
    "ca": "signery.cli.ca:ca",
    "install": "signery.cli.install:install",
    "plugins": "signery.cli.plugins:plugins",
}

# Commands that run a server, or use the server's code, and the extra that installs what they import. A plain
# `pip install signery` signs, verifies and installs; these say which extra to add instead of a traceback.
NEEDS_EXTRA: dict[str, str] = {
    "server": "service",
    "registry": "registry",
    "mirror": "registry",
}
# The top-level modules those extras install (and the frameworks they bring).
EXTRA_MODULES = frozenset(
    {"fastapi", "starlette", "pydantic", "uvicorn", "uvloop", "httptools", "sqlalchemy", "alembic", "psycopg"}
)


def _missing_extra(cmd_name: str | None, exc: ImportError) -> str | None:
    """The extra ``cmd_name`` needs, if ``exc`` says one of that extra's modules is missing."""
    extra = NEEDS_EXTRA.get(cmd_name or "")
    missing = (exc.name or "").partition(".")[0]
    return extra if extra is not None and missing in EXTRA_MODULES else None


def _needs_extra_message(cmd_name: str, extra: str) -> str:
    return f"signery: {cmd_name} needs the '{extra}' extra: pip install 'signery[{extra}]'"


def _exit_needing(cmd_name: str, extra: str) -> NoReturn:
    click.echo(_needs_extra_message(cmd_name, extra), err=True)
    sys.exit(3)  # an environment error (cli._common.EXIT_ENV, not imported here to keep start-up lean)


def _placeholder(cmd_name: str, extra: str) -> click.Command:
    """Stands in for a command whose module cannot be imported without ``extra``: listed, and explains itself."""

    def run() -> None:
        _exit_needing(cmd_name, extra)

    return click.Command(
        cmd_name,
        callback=run,
        help=f"(needs the '{extra}' extra: pip install 'signery[{extra}]')",
        context_settings={"ignore_unknown_options": True, "allow_extra_args": True, "help_option_names": []},
    )


class LazyGroup(JsonGroup):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module, _, attr = target.partition(":")
        try:
            cmd = getattr(importlib.import_module(module), attr)
        except ImportError as exc:
            extra = _missing_extra(cmd_name, exc)
            if extra is None:
                raise
            return _placeholder(cmd_name, extra)
        assert isinstance(cmd, click.Command)
        return cmd

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ImportError as exc:  # commands import their heavy modules when they run
            extra = _missing_extra(ctx.invoked_subcommand, exc)
            if extra is None or ctx.invoked_subcommand is None:
                raise
            _exit_needing(ctx.invoked_subcommand, extra)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="signery")
def cli() -> None:
    """Sign software packages, and refuse the ones not signed by someone you trust.

    Create a key with `signery keygen alice` (alice.private.pem, 0600, and alice.public.pem), sign, trust the
    public key with `signery trust add alice.public.pem --name alice`, and verify: exit 0 verified, 1 refused,
    with the reason.

    \b
    Examples:
      signery sign plugin.zip --key alice.private.pem
      signery verify plugin.signed.zip --key alice.public.pem
      signery verify plugin.signed.zip --json

    Exit codes: 0 ok, 1 verification failed or refused, 2 usage or input error, 3 environment error.
    Trust store and policy live in $SIGNERY_HOME (default ~/.config/signery).
    """


def main(argv: list[str] | None = None) -> Any:
    """Entry point of the ``signery`` console script."""
    # What is imported by now lives as long as the process: keep it out of the collector's sight, and collect
    # less often (as mypy does). Verifying a package of 10,000 files allocates a few hundred thousand objects
    # and almost no cycles; with the default thresholds the collector costs more than the verification.
    gc.freeze()
    gc.set_threshold(100_000, 50, 100)
    return cli.main(args=argv, prog_name="signery")


__all__ = ["cli", "main"]
