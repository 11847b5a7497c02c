"""One admitted request, as the inference service carries it from its plan to its record."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from crossroads.plugins import NONE, Plugins
from crossroads.providers.reasoning import ReasoningSpec
from crossroads.routing.context import RequestContext
from crossroads.routing.plan import Plan
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

    @property
    def reasons(self) -> bool:
        """The request asks the model to reason."""
        return self.reasoning is not None and self.reasoning.enabled

    @property
    def hides_reasoning(self) -> bool:
        """`reasoning.exclude`: the model reasons (billed), the client does not see it."""
        return self.reasoning is not None and self.reasoning.exclude
