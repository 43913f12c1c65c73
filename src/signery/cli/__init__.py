"""The ``signery`` command line: a thin layer over the library.

Subcommands are imported only when run (a lazy group), so ``signery verify`` starts fast.
"""

from __future__ import annotations

import gc
import importlib
from typing import Any

import click

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


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module, _, attr = target.partition(":")
        cmd = getattr(importlib.import_module(module), attr)
        assert isinstance(cmd, click.Command)
        return cmd


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="signery")
def cli() -> None:
    """Sign software packages, and refuse the ones not signed by someone you trust.

    \b
    Quick tour:
      signery keygen alice                          # alice.private.pem (0600) + alice.public.pem
      signery sign plugin.zip --key alice.private.pem
      signery trust add alice.public.pem --name alice
      signery verify plugin.signed.zip              # exit 0 verified, 1 refused (with the reason)

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
