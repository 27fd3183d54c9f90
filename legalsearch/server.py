"""HTTP API for RAG systems (`legalsearch serve`): FastAPI, one `LegalSearch` loaded once at start.

Endpoints are plain (non-async) functions, so FastAPI runs them in its thread pool and query encoding never
blocks the event loop. Requests are validated (query length, k, batch size, real dates, no unknown keys); a
body over `MAX_BODY_BYTES` gets 413 before it is parsed; every error is `{"detail": "<one line>"}` and never
echoes the request back. The docs at /docs are served from the package (no CDN).
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import FastAPI, HTTPException, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from . import __version__
from .dates import check_day
from .embedding import recorded_runtime
from .errors import LegalSearchError, QueryError, UsageError
from .search import MAX_QUERY_CHARS, Filters, LegalSearch
from .web import add_pages

MAX_K = 100  # the CLI and Python allow up to search.MAX_K (1000): a server bounds the work one request costs
MAX_BATCH = 64
MAX_BODY_BYTES = 1_000_000
Mode = Literal["dense", "funnel", "lexical", "hybrid"]


def _real_day(value: str | None) -> str | None:
    if value is not None:
        try:
            check_day(value, "as_of")
        except UsageError as exc:
            raise ValueError(str(exc)) from None
    return value


Day = Annotated[
    Annotated[str, Field(max_length=10)] | None,
    AfterValidator(_real_day),
    Field(description="YYYY-MM-DD", examples=["2011-09-27"]),
]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt key ("law" for "laws") is an error, never ignored


class FilterRequest(Strict):
    laws: list[Annotated[str, Field(max_length=40)]] = Field(
        default_factory=list, description="BOE ids", max_length=200
    )
    rangos: list[Annotated[str, Field(max_length=100)]] = Field(default_factory=list, max_length=50)
    kinds: list[Annotated[str, Field(max_length=40)]] = Field(
        default_factory=list, description="articulos, disposiciones or unit kinds", max_length=20
    )
    vigentes: bool = False
    as_of: Day = None
    materias: list[Annotated[str, Field(max_length=200)]] = Field(
        default_factory=list, description="BOE subject headings (análisis)", max_length=50
    )

    def to_filters(self) -> Filters:
        return Filters(
            tuple(self.laws), tuple(self.rangos), tuple(self.kinds), self.vigentes, self.as_of, tuple(self.materias)
        )


class SearchOptions(Strict):
    k: int = Field(default=5, ge=1, le=MAX_K)
    dim: int | None = Field(default=None, ge=1)
    mode: Mode | None = None
    filters: FilterRequest = Field(default_factory=FilterRequest)
    shortlist: int | None = Field(default=None, ge=1, le=10_000)


class SearchRequest(SearchOptions):
    query: str = Field(min_length=1, max_length=MAX_QUERY_CHARS, examples=["¿Cuántos días de vacaciones hay?"])


class BatchRequest(SearchOptions):
    queries: list[Annotated[str, Field(min_length=1, max_length=MAX_QUERY_CHARS)]] = Field(
        min_length=1, max_length=MAX_BATCH
    )


def _one_line(error: dict) -> str:
    """ "body.filters.law: Extra inputs are not permitted" — where and what, never the input itself."""
    where = ".".join(str(part) for part in error.get("loc", ()))
    message = str(error.get("msg", "invalid")).splitlines()[0][:200]
    return f"{where}: {message}" if where else message


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = exc.errors()
    detail = _one_line(errors[0]) if errors else "invalid request"
    if len(errors) > 1:
        detail += f" (and {len(errors) - 1} more)"
    return JSONResponse({"detail": detail}, status_code=422)


async def _library_error(request: Request, exc: LegalSearchError) -> JSONResponse:
    """A usage error is the client's (400); a damaged index or a model that cannot load is the server's (503)."""
    status = 400 if isinstance(exc, UsageError) else 503
    return JSONResponse({"detail": str(exc).splitlines()[0]}, status_code=status)


class BodyLimit:
    """ASGI middleware: a request body over `limit` bytes gets 413 before anything parses it."""

    def __init__(self, app, limit: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            return await self._refuse(send)
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.limit:
                return await self._refuse(send)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return await self.app(scope, replay, send)

    async def _refuse(self, send) -> None:
        response = JSONResponse(
            {"detail": f"request body over {self.limit:,} bytes; send fewer or shorter queries"}, status_code=413
        )
        await response({"type": "http"}, None, send)


def create_app(search: LegalSearch) -> FastAPI:
    """The API over an open index."""
    from fastapi_offline import FastAPIOffline

    app = FastAPIOffline(
        title="legalsearch",
        version=__version__,
        description="Semantic search over Spanish legislation (BOE), article by article, with citations. Errors "
        f'are `{{"detail": "<one line>"}}`; bodies over {MAX_BODY_BYTES:,} bytes get 413.',
        redoc_url=None,
    )
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(LegalSearchError, _library_error)
    add_pages(app, search)
    app.add_middleware(BodyLimit)

    def run(queries: list[str], options: SearchOptions) -> list[list[dict]]:
        try:
            results = search.search_many(
                queries, k=options.k, dim=options.dim, mode=options.mode, filters=options.filters.to_filters(),
                shortlist=options.shortlist,
            )  # fmt: skip
        except QueryError as exc:
            raise HTTPException(status_code=400, detail=str(exc)) from None
        return [[hit.to_dict() for hit in hits] for hits in results]

    @app.post("/search", summary="The articles that best answer a question")
    def search_one(request: SearchRequest) -> dict:
        [hits] = run([request.query], request)
        return {"query": request.query, "hits": hits}

    @app.post("/search/batch", summary="Several questions, encoded in one batch")
    def search_batch(request: BatchRequest) -> dict:
        results = run(request.queries, request)
        return {"results": [{"query": q, "hits": h} for q, h in zip(request.queries, results, strict=True)]}

    @app.get("/laws", summary="The laws in the index")
    def laws() -> list[dict]:
        return search.laws()

    @app.get("/laws/{boe_id}", summary="One law and the list of its units")
    def law(boe_id: Annotated[str, Path(max_length=40)]) -> dict:
        found = search.law(boe_id)
        if found is None:
            raise HTTPException(status_code=404, detail=f"law {boe_id} is not in this index; see GET /laws")
        return found

    @app.get("/laws/{boe_id}/articles/{article_id}", summary="One unit of a law, with its text")
    def article(
        boe_id: Annotated[str, Path(max_length=40)],
        article_id: Annotated[str, Path(max_length=60)],
        as_of: Annotated[Day, Query(description="the wording of that day (YYYY-MM-DD)")] = None,
    ) -> dict:
        found = search.article(boe_id, article_id, as_of)
        if found is None and as_of is not None and search.article(boe_id, article_id) is not None:
            raise HTTPException(status_code=404, detail=f"{boe_id} {article_id!r} was not in force on {as_of}")
        if found is None:
            raise HTTPException(status_code=404, detail=f"{boe_id} has no unit {article_id!r}; see GET /laws/{boe_id}")
        return found

    @app.get("/laws/{boe_id}/articles/{article_id}/diff", summary="Word-level diff of a unit between two dates")
    def article_diff(
        boe_id: Annotated[str, Path(max_length=40)],
        article_id: Annotated[str, Path(max_length=60)],
        date_from: Annotated[Day, Query(alias="from", description="the earlier date (YYYY-MM-DD)")] = None,
        date_to: Annotated[Day, Query(alias="to", description="the later date (YYYY-MM-DD)")] = None,
    ) -> dict:
        if date_from is None or date_to is None:
            raise HTTPException(status_code=422, detail="give both dates: ?from=YYYY-MM-DD&to=YYYY-MM-DD")
        try:
            return search.diff(boe_id, article_id, date_from, date_to)
        except QueryError as exc:
            status = 404 if "is not in this index" in str(exc) or "has no unit" in str(exc) else 400
            raise HTTPException(status_code=status, detail=str(exc)) from None

    @app.get("/changes", summary="Units whose wording changed since a date, by law")
    def changes(
        since: Annotated[Day, Query(description="from this date on (YYYY-MM-DD)")] = None,
        until: Annotated[Day, Query(description="up to this date (YYYY-MM-DD)")] = None,
        law: Annotated[list[Annotated[str, Field(max_length=40)]] | None, Query(max_length=50)] = None,
    ) -> list[dict]:
        if since is None:
            raise HTTPException(status_code=422, detail="give a date: ?since=YYYY-MM-DD")
        return search.changes(since, until, tuple(law or ()))

    @app.get("/syncs", summary="The sync runs since a date: norms new, changed, derogated, removed")
    def syncs(since: Annotated[Day, Query(description="from this date on (YYYY-MM-DD)")] = None) -> list[dict]:
        return search.syncs(since)

    @app.get("/health", summary="Liveness and what is loaded")
    def health() -> dict:
        search.refresh()
        manifest = search.manifest
        return {
            "status": "ok",
            "commit": search.commit,
            "updated": manifest.get("updated"),
            "version": __version__,
            "index": str(search.path),
            "model": manifest["model"]["id"],
            "runtime": " ".join(recorded_runtime(manifest["model"])),
            "dims": manifest["dims"],
            "default_mode": search.default_mode,
            "counts": manifest["counts"],
        }

    return app
