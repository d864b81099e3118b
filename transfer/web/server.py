"""The live page's HTTP server (aiohttp): its routes, its assets, and ``serving``, which opens
the journal, listens, and stops.

Routes (GET and HEAD only; ``transfer.web.security`` guards every one):

- ``/``: the page (``static/index.html``), which polls ``/api/overview`` and redraws itself;
- ``/static/{app.js,app.css,icon.svg}``: its script, style and icon, from the package;
- ``/api/overview``: every job's document (``transfer.web.views``), at most one journal read a
  second however many browsers watch;
- ``/api/jobs``: the jobs' names; ``/api/jobs/{job}``: one job's document;
- ``/api/jobs/{job}/throughput``: the chart's numbers; ``/api/jobs/{job}/chart.svg``: the chart.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from importlib.resources import files
from typing import Any

import anyio
from aiohttp import web

from transfer.cli.output import SCHEMA_VERSION
from transfer.config.settings import JournalConfig
from transfer.errors import ConfigError
from transfer.journal import Journal, open_journal
from transfer.web.security import Guard, Listen, security_headers
from transfer.web.views import JobReader

#: The assets the page loads, and their types (nothing else under /static/ is served).
ASSETS = {
    "app.js": "text/javascript",
    "app.css": "text/css",
    "icon.svg": "image/svg+xml",
}
#: How often the page asks for news, seconds.
REFRESH = 2.0
#: The overview is read from the journal at most this often, seconds.
READ_EVERY = 1.0


def _asset(name: str) -> bytes:
    return (files("transfer.web") / "static" / name).read_bytes()


def _json(data: dict[str, Any]) -> web.Response:
    """A JSON answer: a document with the ``schema_version`` every JSON output carries."""
    document = {"schema_version": SCHEMA_VERSION, **data}
    return web.Response(
        body=json.dumps(document, indent=1, sort_keys=True).encode() + b"\n",
        content_type="application/json",
    )


class LivePage:
    """The page of one journal's jobs (``only``: of those jobs alone)."""

    def __init__(
        self,
        journal: Journal,
        *,
        where: str,
        jobs: Sequence[str] = (),
        only: Sequence[str] | None = None,
    ) -> None:
        self.journal = journal
        self.where = where
        self.known = list(jobs)
        self.only = list(only) if only else None
        self.reader = JobReader(journal)
        self._overview: tuple[float, dict[str, Any]] | None = None
        self._lock = anyio.Lock()

    async def jobs(self) -> list[str]:
        if self.only is not None:
            return sorted(self.only)
        return sorted(set(self.known) | set(await self.journal.jobs()))

    async def overview(self) -> dict[str, Any]:
        async with self._lock:
            if self._overview is not None and time.monotonic() - self._overview[0] < READ_EVERY:
                return self._overview[1]
            now = await self.journal.clock()
            data = {
                "generated_at": now,
                "journal": self.where,
                "shared": self.journal.work_queue is not None,
                "refresh_seconds": REFRESH,
                "jobs": [await self.reader.job(job, now) for job in await self.jobs()],
            }
            self._overview = (time.monotonic(), data)
            return data

    async def _job_name(self, request: web.Request) -> str:
        job = request.match_info["job"]
        if job not in await self.jobs():
            raise web.HTTPNotFound(text=f"no job named {job!r} in the journal {self.where}")
        return job

    # -- handlers ------------------------------------------------------------------------

    async def index(self, request: web.Request) -> web.StreamResponse:
        return web.Response(body=_asset("index.html"), content_type="text/html", charset="utf-8")

    async def static(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        if name not in ASSETS:
            raise web.HTTPNotFound(text=f"no asset {name!r}")
        return web.Response(body=_asset(name), content_type=ASSETS[name], charset="utf-8")

    async def api_overview(self, request: web.Request) -> web.StreamResponse:
        return _json(await self.overview())

    async def api_jobs(self, request: web.Request) -> web.StreamResponse:
        return _json({"jobs": await self.jobs()})

    async def api_job(self, request: web.Request) -> web.StreamResponse:
        job = await self._job_name(request)
        return _json(await self.reader.job(job, await self.journal.clock()))

    async def api_throughput(self, request: web.Request) -> web.StreamResponse:
        job = await self._job_name(request)
        return _json(await self.reader.throughput(job, await self.journal.clock()))

    async def api_chart(self, request: web.Request) -> web.StreamResponse:
        job = await self._job_name(request)
        svg = await self.reader.chart(job, await self.journal.clock())
        return web.Response(text=svg, content_type="image/svg+xml")

    def app(self, guard: Guard) -> web.Application:
        app = web.Application(middlewares=guard.middlewares())
        app.on_response_prepare.append(security_headers)
        app.router.add_get("/", self.index)
        app.router.add_get("/static/{name}", self.static)
        app.router.add_get("/api/overview", self.api_overview)
        app.router.add_get("/api/jobs", self.api_jobs)
        app.router.add_get("/api/jobs/{job}", self.api_job)
        app.router.add_get("/api/jobs/{job}/throughput", self.api_throughput)
        app.router.add_get("/api/jobs/{job}/chart.svg", self.api_chart)
        return app


def journal_name(journal: Journal, config: JournalConfig) -> str:
    """The journal as the page names it: a PostgreSQL URL without its password, or a path."""
    display = getattr(journal, "display", None)
    return str(display) if display else str(config.path)


@asynccontextmanager
async def serving(
    config: JournalConfig,
    listen: Listen,
    *,
    token: str | None,
    jobs: Sequence[str] = (),
    only: Sequence[str] | None = None,
) -> AsyncIterator[tuple[str, str]]:
    """The page of ``config``'s journal on ``listen``, for the body's time; yields its URL and
    the journal's name."""
    async with open_journal(config) as journal:
        where = journal_name(journal, config)
        page = LivePage(journal, where=where, jobs=jobs, only=only)
        runner = web.AppRunner(page.app(Guard(listen, token)), access_log=None)
        await runner.setup()
        try:
            site = web.TCPSite(runner, listen.host, listen.port)
            try:
                await site.start()
            except OSError as exc:
                raise ConfigError(
                    f"{listen.option} {listen.host}:{listen.port}: cannot listen there: "
                    f"{exc.strerror or exc}"
                ) from None
            port = int(runner.addresses[0][1])
            yield listen.url(port), where
        finally:
            await runner.cleanup()
