"""The website's listing pages and their routes (`listing_routes`):

- `/models`: every model, searchable, filtered and sorted on the server (`models_list`);
- `/rankings`: models by tokens this week and the month's top apps; `/apps`: each app
  with its models (`rankings`);
- `/providers` and `/providers/{slug}`: status, models and uptime (`providers`);
- `/compare?models=a,b[,c]`: models side by side (`compare`).

Every path here is literal or starts with a literal segment, so these routes must come
before the model page's `/{author}/{slug}` patterns (`/providers/{slug}` would otherwise
be read as a model whose author is "providers").
"""

from __future__ import annotations

from starlette.routing import BaseRoute, Route

from crossroads.web.compare import compare_page
from crossroads.web.models_list import models_page
from crossroads.web.providers import provider_page, providers_page
from crossroads.web.rankings import apps_page, rankings_page


def listing_routes() -> list[BaseRoute]:
    return [
        Route("/models", models_page, methods=["GET"]),
        Route("/rankings", rankings_page, methods=["GET"]),
        Route("/apps", apps_page, methods=["GET"]),
        Route("/providers", providers_page, methods=["GET"]),
        Route("/providers/{slug}", provider_page, methods=["GET"]),
        Route("/compare", compare_page, methods=["GET"]),
    ]
