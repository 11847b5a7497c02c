"""One admitted request, as the inference service carries it from its plan to its record."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from crossroads.plugins import NONE, Plugins
from crossroads.plugins.compression import compress
from crossroads.plugins.files import ParsedFile
from crossroads.plugins.search import Result
from crossroads.providers.reasoning import ReasoningSpec
from crossroads.routing.context import RequestContext
from crossroads.routing.plan import Plan
from crossroads.routing.tokens import estimate_prompt_tokens
from crossroads.schema.catalog import Endpoint
from crossroads.schema.chat import ChatRequest


@dataclass(frozen=True, slots=True)
class Job:
    """The request parsed (`request`) and as sent upstream (`body`, guardrails applied), its
    plan, who asks (`ctx`, with the admission ticket), its reasoning resolved once, and what
    its plugins ask of the answer."""

    request: ChatRequest
    body: dict[str, Any]
    plan: Plan
    ctx: RequestContext
    reasoning: ReasoningSpec | None
    plugins: Plugins = NONE
    files: tuple[ParsedFile, ...] = ()  # PDFs the file-parser read: annotations of the answer
    citations: tuple[Result, ...] = ()  # the web plugin's results: annotations too

    def annotations(self) -> list[dict[str, Any]]:
        """What the answer's message carries besides the provider's own annotations."""
        return [*(f.annotation() for f in self.files), *(r.annotation() for r in self.citations)]

    def body_for(self, endpoint: Endpoint, notes: list[str]) -> dict[str, Any]:
        """The body to send `endpoint`: the request's, or, when its prompt is too long for
        the endpoint's context and context-compression applies there, compressed to fit
        (what was removed is added to `notes`)."""
        context = endpoint.context_length
        completion = self.request.completion_limit or 0
        if not context or not self.plugins.compresses(context):
            return self.body
        budget = context - completion
        if endpoint.max_prompt_tokens:
            budget = min(budget, endpoint.max_prompt_tokens)
        if self.plan.prompt_tokens <= budget:
            return self.body
        compressed = compress(self.body, budget, estimate_prompt_tokens)
        if compressed is None:  # the plan kept it, so it fits; send it whole if not
            return self.body
        notes.append(compressed.note)
        return {**self.body, "messages": compressed.messages}

    @property
    def reasons(self) -> bool:
        """The request asks the model to reason."""
        return self.reasoning is not None and self.reasoning.enabled

    @property
    def hides_reasoning(self) -> bool:
        """`reasoning.exclude`: the model reasons (billed), the client does not see it."""
        return self.reasoning is not None and self.reasoning.exclude
