"""The dashboard app: the experiment list and each experiment's report, the same HTML as
`feedlab analyze --format html`, computed on request and kept for a minute (a report runs a
few SQL aggregates per metric; analysts reload pages far more often than data changes)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

from cachetools import TTLCache, cached
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse
from feedlab.analysis.dashboard.overview import ExperimentSummary, list_experiments
from feedlab.storage.engine import make_engine
from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy import Engine

from feedlab.settings import database_url

CACHE_SECONDS = 60
TEMPLATES = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=select_autoescape(["html", "j2"]),
)


class Pages:
    """The two pages over one engine, each cached for CACHE_SECONDS."""

    def __init__(
        self,
        engine: Engine,
        ttl: float = CACHE_SECONDS,
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        self.engine = engine
        self.ttl = ttl
        lock = threading.Lock()
        self.experiments = cached(TTLCache(1, ttl, timer), lock=lock)(self._experiments)
        self.report = cached(TTLCache(256, ttl, timer), lock=lock)(self._report)

    def _experiments(self) -> list[ExperimentSummary]:
        return list_experiments(self.engine)

    def _report(self, experiment: str) -> str:
        from feedlab.analysis.online.analyze import analyze
        from feedlab.analysis.report.html import render_html

        return render_html(analyze(self.engine, experiment))


def get_pages(request: Request) -> Pages:
    return request.app.state.pages


PagesDep = Annotated[Pages, Depends(get_pages)]


def create_dashboard(url: str | None = None) -> FastAPI:
    """The dashboard over the database at `url` (default: $FEEDLAB_DATABASE_URL)."""
    app = FastAPI(title="feedlab dashboard", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.pages = Pages(make_engine(database_url(url)))

    @app.get("/", response_class=HTMLResponse)
    def experiments(pages: PagesDep) -> str:
        """Every experiment with its phases, status and traffic."""
        return TEMPLATES.get_template("experiments.html.j2").render(
            experiments=pages.experiments(), ttl=int(pages.ttl)
        )

    @app.get("/experiments/{name}", response_class=HTMLResponse)
    def report(name: str, pages: PagesDep) -> str:
        """The experiment's report (as `feedlab analyze --format html`)."""
        try:
            return pages.report(name)
        except LookupError as exc:
            raise HTTPException(404, str(exc)) from None

    return app
