"""The interactive pages: `/chat`, `/account`, `/account/sign-in`, `/account/generation`.

The server renders each page as a shell (headings, labelled forms, empty tables); the
browser does the rest with the visitor's API key, which it keeps in localStorage (pasted
once on the sign-in page, never put in a URL) and sends as a bearer token to this server's
own API: `static/stream.js` (the key, API calls, streamed chat completions), `chat.js`,
`account.js`. The model page's Playground tab (`templates/model/playground.html`,
`static/playground.js`) uses the same pieces.

What the server knows it renders: the models the chat can route to (a model with at
least one endpoint whose provider is usable here), and how to get one when there is none.
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from crossroads.catalog.catalog import Catalog, Model
from crossroads.web.figures import model_usable
from crossroads.web.templating import render


@dataclass(frozen=True, slots=True)
class ChatModel:
    """A model the chat page offers: its id, display name and the providers usable for it."""

    id: str
    name: str
    providers: tuple[str, ...]


def _gateway_catalog(request: Request) -> Catalog:
    catalog: Catalog = request.app.state.gateway.catalog
    return catalog


def _answers_text(model: Model) -> bool:
    return "text" in model.output_modalities


def chat_models(catalog: Catalog) -> list[ChatModel]:
    """The models the chat can use here, by name: text out, and at least one endpoint whose
    provider is usable (`figures.model_usable`: credentials present, a local server online)."""
    providers = catalog.providers
    found = []
    for model in catalog.models.values():
        if not (model_usable(model, catalog) and _answers_text(model)):
            continue
        usable = (providers[e.provider] for e in model.endpoints)
        names = tuple(dict.fromkeys(p.name for p in usable if p.usable))
        name = str(model.info.get("name") or model.id)
        found.append(ChatModel(id=model.id, name=name, providers=names))
    return sorted(found, key=lambda m: (m.name.lower(), m.id))


def unusable_providers(catalog: Catalog) -> list[tuple[str, str]]:
    """(name, reason) of every provider not usable here, by name: what `no_provider.html`
    lists when the chat has no model at all."""
    return sorted(
        (p.name, p.unusable_reason or "not usable")
        for p in catalog.providers.values()
        if not p.usable
    )


async def chat_page(request: Request) -> Response:
    catalog = _gateway_catalog(request)
    models = chat_models(catalog)
    wanted = request.query_params.get("model", "")
    canonical = catalog.canonical_id(wanted) if wanted else None
    selected = canonical if canonical and any(m.id == canonical for m in models) else None
    return render(
        request,
        "chat.html",
        models=models,
        selected=selected or (models[0].id if models else None),
        wanted=wanted if wanted and selected is None else None,
        missing=[] if models else unusable_providers(catalog),
    )


async def account_page(request: Request) -> Response:
    return render(request, "account.html")


async def sign_in_page(request: Request) -> Response:
    return render(request, "sign_in.html")


async def generation_page(request: Request) -> Response:
    """One generation's record; the id is in the query (`?id=`), read by account.js."""
    return render(request, "generation.html")


def interactive_routes() -> list[BaseRoute]:
    """The interactive pages' routes (literal paths: before the model pages' patterns)."""
    return [
        Route("/chat", chat_page, methods=["GET"]),
        Route("/account", account_page, methods=["GET"]),
        Route("/account/sign-in", sign_in_page, methods=["GET"]),
        Route("/account/generation", generation_page, methods=["GET"]),
    ]
