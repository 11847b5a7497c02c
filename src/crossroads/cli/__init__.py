"""The `crossroads` command: serve the gateway, simulate providers, manage keys and credits."""

from __future__ import annotations

import click

from crossroads import __version__
from crossroads.cli.credits import credits
from crossroads.cli.keys import keys
from crossroads.cli.local import local
from crossroads.cli.serve import serve
from crossroads.cli.simulate import simulate


@click.group()
@click.version_option(__version__, prog_name="crossroads")
def main() -> None:
    """Crossroads: one OpenRouter-compatible API in front of every LLM provider."""


main.add_command(serve)
main.add_command(simulate)
main.add_command(local)
main.add_command(keys)
main.add_command(credits)
