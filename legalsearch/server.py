"""HTTP API for RAG systems (`legalsearch serve`): FastAPI, one `LegalSearch` loaded once at start.

Endpoints are plain (non-async) functions, so FastAPI runs them in its thread pool and query encoding never
blocks the event loop. Requests are validated (query length, k, batch size) and library errors become 4xx with
one clear `detail` line.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import FastAPI, HTTPException, Path, Query
from pydantic import BaseModel, Field

from . import __version__
from .embedding import recorded_runtime
from .errors import LegalSearchError, QueryError
from .search import MAX_QUERY_CHARS, Filters, LegalSearch

MAX_K = 100
MAX_BATCH = 64
Mode = Literal["dense", "funnel", "lexical", "hybrid"]


class FilterRequest(BaseModel):
    laws: list[str] = Field(default_factory=list, description="BOE ids", max_length=200)
    rangos: list[str] = Field(default_factory=list, max_length=50)
    kinds: list[str] = Field(default_factory=list, description="articulos, disposiciones or unit kinds")
    vigentes: bool = False
    as_of: str | None = Field(default=None, pattern=r"^\d{4}-\d{2}-\d{2}$")

    def to_filters(self) -> Filters:
        return Filters(tuple(self.laws), tuple(self.rangos), tuple(self.kinds), self.vigentes, self.as_of)


class SearchOptions(BaseModel):
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


def create_app(search: LegalSearch) -> FastAPI:
    """The API over an open index."""
    app = FastAPI(
        title="legalsearch",
        version=__version__,
        description="Semantic search over Spanish legislation (BOE), article by article, with citations.",
    )

    def run(queries: list[str], options: SearchOptions) -> list[list[dict]]:
        try:
            results = search.search_many(
                queries, k=options.k, dim=options.dim, mode=options.mode, filters=options.filters.to_filters(),
                shortlist=options.shortlist,
            )  # fmt: skip
        except QueryError as exc:
            raise HTTPException(status_code=400, detail=str(exc)) from None
        except LegalSearchError as exc:
            raise HTTPException(status_code=500, detail=str(exc)) from None
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
        as_of: Annotated[
            str | None, Query(pattern=r"^\d{4}-\d{2}-\d{2}$", description="the wording of that day")
        ] = None,
    ) -> dict:
        found = search.article(boe_id, article_id, as_of)
        if found is None and as_of is not None and search.article(boe_id, article_id) is not None:
            raise HTTPException(status_code=404, detail=f"{boe_id} {article_id!r} was not in force on {as_of}")
        if found is None:
            raise HTTPException(status_code=404, detail=f"{boe_id} has no unit {article_id!r}; see GET /laws/{boe_id}")
        return found

    @app.get("/health", summary="Liveness and what is loaded")
    def health() -> dict:
        manifest = search.manifest
        return {
            "status": "ok",
            "version": __version__,
            "index": str(search.path),
            "model": manifest["model"]["id"],
            "runtime": " ".join(recorded_runtime(manifest["model"])),
            "dims": manifest["dims"],
            "default_mode": search.default_mode,
            "counts": manifest["counts"],
        }

    return app
