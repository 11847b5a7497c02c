"""Apps: where requests come from, one `apps` row per normalized HTTP-Referer.

`GenerationStore.insert_many` resolves each new record's referer to its app (creating the
row the first time the app is seen) and points the record's `app_id` at it, in the insert's
transaction; the app's title is the last non-empty X-Title its records carried.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from crossroads.storage.tables import apps

URL_LENGTH = 500  # apps.url
TITLE_LENGTH = 200  # apps.title


def normalize_app_url(referer: str) -> str | None:
    """The app URL of an HTTP-Referer: scheme and host in lower case, the port kept, the
    path kept without its trailing "/", no user info, query or fragment.
    `HTTPS://Example.com:8443/Chat/?q=1` is `https://example.com:8443/Chat`.

    None when the referer is not a URL with a scheme and a host (`example.com` alone,
    `localhost:3000`, a bad port) or its app URL would be longer than the column."""
    try:
        parts = urlsplit(referer.strip())
        host, port = parts.hostname, parts.port
    except ValueError:
        return None
    if not parts.scheme or not host:
        return None
    if ":" in host:  # IPv6
        host = f"[{host}]"
    netloc = host if port is None else f"{host}:{port}"
    url = f"{parts.scheme.lower()}://{netloc}{parts.path.rstrip('/')}"
    return url if len(url) <= URL_LENGTH else None


def clean_title(title: Any) -> str | None:
    """An app title as stored: the text without surrounding blanks; None if empty."""
    if not isinstance(title, str):
        return None
    return title.strip()[:TITLE_LENGTH] or None


class AppRows:
    """The `apps` statements `insert_many` runs in its transaction, for one dialect."""

    def __init__(self, dialect: str) -> None:
        insert: Any = (postgresql if dialect == "postgresql" else sqlite).insert(apps)
        self._create: sa.Insert = insert.on_conflict_do_nothing(index_elements=[apps.c.url])
        self._retitle = (
            apps.update()
            .where(
                apps.c.id == sa.bindparam("app"),
                sa.or_(apps.c.title.is_(None), apps.c.title != sa.bindparam("new_title")),
            )
            .values(title=sa.bindparam("new_title"), updated_at=sa.bindparam("at"))
        )

    async def ids(
        self, conn: AsyncConnection, urls: Collection[str], *, at: datetime
    ) -> dict[str, int]:
        """The id of each app URL, its row created (untitled, at `at`) if there is none."""
        if not urls:
            return {}
        found = await self._read(conn, urls)
        missing = sorted(set(urls) - found.keys())  # one lock order for every writer
        if missing:
            await conn.execute(
                self._create, [{"url": url, "title": None, "created_at": at} for url in missing]
            )
            found.update(await self._read(conn, missing))
        return found

    async def retitle(
        self, conn: AsyncConnection, titles: Mapping[int, str], *, at: datetime
    ) -> None:
        """Set each app's title (by id), where it differs; `updated_at` then becomes `at`."""
        params = [
            {"app": app, "new_title": title, "at": at} for app, title in sorted(titles.items())
        ]
        if params:
            await conn.execute(self._retitle, params)

    async def _read(self, conn: AsyncConnection, urls: Collection[str]) -> dict[str, int]:
        query = sa.select(apps.c.url, apps.c.id).where(apps.c.url.in_(sorted(urls)))
        return {row.url: int(row.id) for row in await conn.execute(query)}
