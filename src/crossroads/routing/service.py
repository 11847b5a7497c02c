"""The inference service: one owner for a chat request, from its parse to its record.

`prepare` parses the request once, applies the key's guardrails, resolves its reasoning
once, plans its endpoints and admits it against every limit: a `Job`. `complete` and
`stream` are two thin drivers of one attempt loop (`attempt_loop`), which tries the plan's
endpoints in order and falls back on failures of the provider (5xx, 429, timeouts,
connection errors, the provider's own auth or model faults) while nothing has reached the
client; a request error (400, 413, 422) moves on to the next model of `models` instead.
Every attempt feeds the live statistics and the endpoint's circuit, and every request,
served or not, leaves one generation record (`routing.run`): a client that goes away
before output is recorded as cancelled and charged nothing; a bug of the gateway's is
recorded as an error, charged nothing, and let out for the app's one error handler.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncGenerator, Callable
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any

import orjson

from crossroads.accounting.keys import ApiKey
from crossroads.catalog import Catalog
from crossroads.errors import GatewayError, StreamFailure
from crossroads.limits.demand import demand_for
from crossroads.limits.guardrails import guard_body, guardrail_error
from crossroads.limits.policy import Limits
from crossroads.plugins import ONLINE, Plugins, plugins_of
from crossroads.plugins.files import TEXT_ENGINES, ParsedFile, has_files, parse_files
from crossroads.plugins.moderation import Moderator, user_texts
from crossroads.plugins.search import Result, WebSearch, query_of, with_results
from crossroads.providers.base import UpstreamError
from crossroads.providers.reasoning import resolve_reasoning
from crossroads.routing.attempt import Upstream
from crossroads.routing.context import RequestContext
from crossroads.routing.job import Job
from crossroads.routing.plan import plan_request
from crossroads.routing.relay import AnswerLeg, Leg, StreamLeg
from crossroads.routing.run import Run, Sinks
from crossroads.routing.tokens import estimate_prompt_tokens
from crossroads.schema.catalog import DataPolicy
from crossroads.schema.chat import MAX_TRACE_BYTES, ChatRequest
from crossroads.telemetry.circuit import Circuits
from crossroads.telemetry.stats import LiveStats

Output = dict[str, Any] | StreamFailure


@dataclass(frozen=True, slots=True)
class ChatStream:
    """One streamed chat completion: OpenAI-shaped chunks, then, if the provider failed
    after output began, one `StreamFailure`. If every endpoint fails first, `chunks`
    raises the GatewayError. `settle` runs when the response closes: a stream that never
    began is still recorded and its admission released."""

    chunks: AsyncGenerator[Output, None]
    settle: Callable[[], None]


class InferenceService:
    def __init__(
        self,
        *,
        catalog: Catalog,
        upstream: Upstream,
        stats: LiveStats,
        circuits: Circuits,
        limits: Limits,
        sinks: Sinks,
        rng: random.Random,
        moderator: Moderator | None = None,
        searcher: WebSearch | None = None,
    ) -> None:
        self.catalog, self.upstream, self.stats, self.circuits = catalog, upstream, stats, circuits
        self.limits, self.sinks, self.rng = limits, sinks, rng
        self.moderator = moderator  # the moderation plugin's service, when configured
        self.searcher = searcher  # the web plugin's engine, when configured

    async def prepare(
        self,
        body: dict[str, Any],
        *,
        key: ApiKey,
        ctx: RequestContext,
        parse: Callable[[dict[str, Any]], ChatRequest],
    ) -> Job:
        """Parse, guard, plan and admit one request (402 or 429 when a limit says no); `body`
        is OpenRouter's chat request, `parse` the dialect's validation of it."""
        request = parse(body)
        rails = key.guardrails
        if rails is not None:  # the key's guardrails force their policy onto the request
            body = guard_body(rails, body, resolve=self.catalog.canonical_id)
            request = parse(body)
        body, online = _without_online_suffix(body)  # `model:online`: the web plugin on
        if online:
            request = parse(body)
        plugins = plugins_of(request, online=online)  # one not implemented: 400 before work
        if request.trace and len(orjson.dumps(request.trace)) > MAX_TRACE_BYTES:
            raise GatewayError(400, f"Invalid request: 'trace' is over {MAX_TRACE_BYTES} bytes")
        private = _privacy(request)  # the request's data policy binds the plugins' services too
        if plugins.moderation:  # before anything is spent on it
            if self.moderator is None:
                raise GatewayError(
                    400, "Plugin 'moderation' is not configured on this server (config: moderation)"
                )
            policy = self.moderator.provider.data_policy
            if private and (
                policy is None or not (policy.zdr if private == "zdr" else not policy.training)
            ):
                raise GatewayError(
                    400,
                    f"Plugin 'moderation' sends the input to {self.moderator.provider.name}, "
                    f"whose data policy this request's provider.{_PRIVACY_FIELD[private]} does "
                    "not allow",
                )
            ctx.moderation_ms = await self.moderator.check(user_texts(body))
        citations: list[Result] = []
        if plugins.web is not None:
            if self.searcher is None:
                raise GatewayError(
                    400, "Plugin 'web' is not configured on this server (config: web_search)"
                )
            engine = self.searcher.config.engine
            if private and engine != "searxng":  # a hosted engine: the query leaves the server
                raise GatewayError(
                    400,
                    f"Plugin 'web' sends the query to {engine}, which this request's "
                    f"provider.{_PRIVACY_FIELD[private]} does not allow (a self-hosted SearXNG "
                    "engine does)",
                )
            citations = await self.searcher.search(query_of(body), plugins.web.max_results)
            body = with_results(body, citations, plugins.web.search_prompt)
            request = parse(body)
        files: list[ParsedFile] = []
        if plugins.parses_files and has_files(body) and self._parses_files(request, plugins):
            # PDFs as text, for a model that reads no files: in a thread (parsing is CPU work)
            body, files = await asyncio.to_thread(parse_files, body)
            request = parse(body)
        reasoning = resolve_reasoning(body)
        reasons = reasoning is not None and reasoning.enabled
        try:
            plan = plan_request(
                request,
                body,
                self.catalog,
                self.stats,
                self.rng,
                circuits=self.circuits,
                reasoning=reasons,
                plugins=plugins,
            )
        except GatewayError as error:
            if rails is None:
                raise
            raise guardrail_error(rails, error) from None
        demand = demand_for(
            plan.endpoints,
            prompt_tokens=plan.prompt_tokens,
            requested_output=request.completion_limit,
            reasoning=reasons,
        )
        ctx.ticket = await self.limits.admit(key, demand)
        ctx.route = [e.id for e in plan.endpoints]  # the plan, for tracing
        return Job(request, body, plan, ctx, reasoning, plugins, tuple(files), tuple(citations))

    def _parses_files(self, request: ChatRequest, plugins: Plugins) -> bool:
        """Whether the request's files are parsed: asked for by a text engine, or by default
        when the model it names first does not read files (`native`: sent as they are, to
        a model that reads them)."""
        if plugins.pdf_engine in TEXT_ENGINES:
            return True
        name = request.model or (request.models or [""])[0]
        found = self.catalog.find(name) if name else None
        reads_files = found is not None and "file" in found[0].input_modalities
        if plugins.pdf_engine == "native" and found is not None and not reads_files:
            raise GatewayError(
                400, f"{found[0].id} does not read files: the 'native' PDF engine needs one"
            )
        return found is not None and not reads_files

    async def complete(self, job: Job) -> dict[str, Any]:
        """The whole answer: OpenRouter's chat completion, or the GatewayError that ends it."""
        run = Run(self.sinks, job, streamed=False)
        try:
            async with aclosing(attempt_loop(self.upstream, run, AnswerLeg)) as outputs:
                answer = await anext(outputs)  # the loop yields once, or raises
        finally:
            run.abandon()
        assert isinstance(answer, dict)  # a whole answer never fails midway
        return answer

    def stream(self, job: Job) -> ChatStream:
        run = Run(self.sinks, job, streamed=True)
        return ChatStream(attempt_loop(self.upstream, run, StreamLeg), run.abandon)


_PRIVACY_FIELD = {"zdr": "zdr", "deny": "data_collection: deny"}


def _privacy(request: ChatRequest) -> str | None:
    """What the request's data policy asks of any service its text goes to: "zdr", "deny"
    (no training on it), or None (nothing)."""
    prefs = request.provider
    if prefs is None:
        return None
    if prefs.zdr:
        return "zdr"
    return "deny" if prefs.data_collection == "deny" else None


def _allows(policy: DataPolicy | None, private: str) -> bool:
    """Whether a service of `policy` may take text under the request's data policy."""
    if policy is None:  # unknown: it cannot satisfy a requirement
        return False
    return policy.zdr if private == "zdr" else not policy.training


def _without_online_suffix(body: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """`body` with `:online` taken off its model ids, and whether any had it."""
    model, models = body.get("model"), body.get("models")
    named = [model, *(models if isinstance(models, list) else [])]
    if not any(isinstance(m, str) and m.endswith(ONLINE) for m in named):
        return body, False

    def plain(name: Any) -> Any:
        return name[: -len(ONLINE)] if isinstance(name, str) and name.endswith(ONLINE) else name

    body = {**body, "model": plain(model)}
    if isinstance(models, list):
        body["models"] = [plain(m) for m in models]
    return body, True


async def attempt_loop(
    upstream: Upstream, run: Run, kind: type[Leg]
) -> AsyncGenerator[Output, None]:
    """The one attempt loop: what each leg of `kind` delivers, then its last output."""
    job, waits, streamed = run.job, run.ctx.waits, run.streamed
    for endpoint in run.endpoints():
        leg = kind(run, endpoint)
        body = job.body_for(endpoint, leg.notes)
        if body is not job.body:  # compressed for this endpoint: billed on what was sent
            leg.prompt_estimate = estimate_prompt_tokens(body)
        try:
            async with upstream.call(endpoint, body, stream=streamed, waits=waits) as call:
                async for chunk in leg.take(call):
                    yield chunk
            last = leg.finish()
        except UpstreamError as error:
            if not leg.started:
                run.failed(endpoint, error, leg.latency_ms())
                continue
            assert isinstance(leg, StreamLeg)  # only a stream delivers before its end
            yield leg.fail(error)
            return
        except (asyncio.CancelledError, GeneratorExit):
            leg.cancel()  # the client went away, or the consumer closed us
            raise
        except Exception:  # a bug of ours, not the client's doing: record it, let it out
            run.broke(endpoint if leg.started else None)
            raise
        yield last
        return
    raise run.give_up()
