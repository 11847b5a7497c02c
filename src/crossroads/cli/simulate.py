"""`crossroads simulate`: run a simulated provider (OpenAI, Anthropic and Gemini protocols).

Every behaviour (faults included) can also be changed at run time: POST /_sim."""

from __future__ import annotations

import click
from aiohttp import web

from crossroads.simulator.faults import FAULTS
from crossroads.simulator.server import Behaviour, create_simulator_app


@click.command()
@click.option("--port", type=int, required=True, help="Port to listen on.")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--name", default="simulator", show_default=True, help="Name the replies carry.")
@click.option(
    "--latency-ms", type=float, default=0.0, show_default=True, help="Delay before the first token."
)
@click.option(
    "--tokens-per-second", type=float, default=0.0, help="Streaming pace (0: as fast as possible)."
)
@click.option(
    "--fail-rate",
    type=click.FloatRange(0, 1),
    default=0.0,
    show_default=True,
    help="Share of requests answered with --status.",
)
@click.option(
    "--status", type=int, default=500, show_default=True, help="HTTP status of simulated failures."
)
@click.option(
    "--die-after-chunks", type=int, default=None, help="Cut streams after this many chunks."
)
@click.option(
    "--retry-after", default=None, help="Retry-After header of failures (429s send 1 by default)."
)
@click.option(
    "--fault",
    type=click.Choice(sorted(FAULTS)),
    default=None,
    help="Break every answer this way: " + "; ".join(f"{k}: {v}" for k, v in FAULTS.items()),
)
@click.option(
    "--fault-after-output", is_flag=True, help="Streams: break after the first output, not before."
)
@click.option("--seed", type=int, default=None, help="Seed for --fail-rate draws.")
def simulate(
    port: int,
    host: str,
    name: str,
    latency_ms: float,
    tokens_per_second: float,
    fail_rate: float,
    status: int,
    die_after_chunks: int | None,
    retry_after: str | None,
    fault: str | None,
    fault_after_output: bool,
    seed: int | None,
) -> None:
    """Run a simulated OpenAI-compatible provider at http://HOST:PORT/v1."""
    behaviour = Behaviour(
        name=name,
        latency_ms=latency_ms,
        tokens_per_second=tokens_per_second,
        fail_rate=fail_rate,
        status=status,
        die_after_chunks=die_after_chunks,
        retry_after=retry_after,
        fault=fault,
        fault_after_output=fault_after_output,
    )
    click.echo(f"Simulated provider '{name}' on http://{host}:{port}/v1")
    web.run_app(
        create_simulator_app(behaviour, seed), host=host, port=port, print=None, access_log=None
    )
