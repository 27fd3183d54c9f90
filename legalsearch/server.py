"""HTTP API for RAG systems (`legalsearch serve`): FastAPI, one `LegalSearch` loaded once at start.

Endpoints are plain (non-async) functions, so FastAPI runs them in its thread pool and query encoding never
blocks the event loop. Requests are validated (query length, k, batch size, real dates, no unknown keys); a
body over `MAX_BODY_BYTES` gets 413 before it is parsed; every error is `{"detail": "<one line>"}` naming the
field, repeating at most a short harmless prefix of what was sent and no file path of the server (the Spanish
pages answer their errors as Spanish pages). Every 200 answer has a typed schema (`server_models`) and every
documented example works against the index served. With a token every request must carry it; with allowed hosts
the `Host` header must name one (a loopback server is otherwise reachable from any web page by DNS rebinding).
The docs at /docs are served from the package (no CDN)."""

import base64
import datetime
import hmac
import ipaddress
import logging
from pathlib import Path as FilePath
from typing import Annotated, Literal

from fastapi import Body, FastAPI, HTTPException, Path, Query, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from . import __version__, modes, server_models
from .dates import check_day
from .echoes import bounded, redacted, shown
from .embedding import recorded_runtime
from .errors import LegalSearchError, ModelError, QueryError, UsageError
from .modes import SEARCH_MODES
from .search import MAX_QUERY_CHARS, Filters, LegalSearch
from .web import DOCS_CSP, PAGE_CSP, add_pages, field_problem, is_page

MAX_K = 100  # the CLI and Python allow up to search.MAX_K (1000): a server bounds the work one request costs
MAX_BATCH = 64
MAX_BODY_BYTES = 1_000_000
Mode = Literal[SEARCH_MODES]  # the registry of modes.py
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]")
BROWSER_PATHS = ("/docs", "/static/", "/static-offline-docs/", "/openapi.json")  # what a browser opens or loads
TOKEN_PAGE = (
    '<!doctype html><html lang="es"><head><meta charset="utf-8"><title>Clave de acceso · legalsearch</title></head>'
    '<body><p role="alert">Este buscador pide una clave de acceso: vuelva a cargar la página y escriba la clave '
    "que le dio quien lo mantiene como contraseña (el nombre de usuario da igual).</p></body></html>"
)
EXAMPLE_QUESTION = "¿Cuántos días de vacaciones tiene un trabajador?"
log = logging.getLogger("legalsearch.server")


def _real_day(value: str | None) -> str | None:
    if value is not None:
        try:
            check_day(value, "date")
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
        default_factory=list, description="Only these laws (BOE ids; see GET /laws).", max_length=200
    )
    rangos: list[Annotated[str, Field(max_length=100)]] = Field(
        default_factory=list, description="Only laws of these rangos (Ley, Real Decreto …; see GET /laws).",
        max_length=50,
    )  # fmt: skip
    kinds: list[Annotated[str, Field(max_length=40)]] = Field(
        default_factory=list, description="articulos, disposiciones, or unit kinds (disposicion_final …).",
        max_length=20,
    )  # fmt: skip
    vigentes: bool = Field(default=False, description="Leave out repealed laws and units.")
    as_of: Day = Field(default=None, description="Search the wordings in force on this day (YYYY-MM-DD).")
    materias: list[Annotated[str, Field(max_length=200)]] = Field(
        default_factory=list, description="BOE subject headings (análisis; see GET /laws).", max_length=50
    )

    def to_filters(self) -> Filters:
        return Filters.build(self.laws, self.rangos, self.kinds, self.vigentes, self.as_of, self.materias)

    def values(self) -> list:
        return [self.laws, self.rangos, self.kinds, self.as_of, self.materias]


class SearchOptions(Strict):
    k: int = Field(default=5, ge=1, le=MAX_K, description="How many units to return.")
    dim: int | None = Field(default=None, ge=1, description="Vector size to search with (see GET /health, dims).")
    mode: Mode | None = Field(default=None, description=f"{modes.choices()} (default: the index's).")
    filters: FilterRequest = Field(default_factory=FilterRequest, description="Restrictions applied before top k.")
    shortlist: int | None = Field(default=None, ge=1, le=10_000, description="Candidates the funnel mode rescores.")


class SearchRequest(SearchOptions):
    query: str = Field(min_length=1, max_length=MAX_QUERY_CHARS, description="The question, in Spanish.")


class BatchRequest(SearchOptions):
    queries: list[Annotated[str, Field(min_length=1, max_length=MAX_QUERY_CHARS)]] = Field(
        min_length=1, max_length=MAX_BATCH, description="The questions, encoded in one batch."
    )


# --- errors ---------------------------------------------------------------------------------------------------


def _one_line(error: dict) -> str:
    """ "body.filters.law: Extra inputs are not permitted" — where and what; of the input a short harmless prefix
    at most."""
    where = ".".join(shown(part) for part in error.get("loc", ()))
    message = redacted(str(error.get("msg", "invalid")), [error.get("input")])
    return f"{where}: {message}" if where else message


def _page(request: Request, status: int, message: str, link: tuple[str, str] | None = None) -> HTMLResponse:
    return HTMLResponse(request.app.state.pages.error_page(status, message, link)[1], status_code=status)


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse | HTMLResponse:
    errors = exc.errors()
    if is_page(request.url.path):
        loc = errors[0].get("loc", ()) if errors else ()
        return _page(request, 400, field_problem(str(loc[-1]) if loc else ""))
    detail = _one_line(errors[0]) if errors else "invalid request"
    if len(errors) > 1:
        detail += f" (and {len(errors) - 1} more)"
    return JSONResponse({"detail": bounded(detail)}, status_code=422)


async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
    """The API's own errors as FastAPI writes them; on a page path (a mistyped /ley/… link) a Spanish page."""
    if is_page(request.url.path):
        missing = exc.status_code == 404
        return _page(request, exc.status_code, "Esta página no existe: vuelva a la búsqueda." if missing else
                     "No se pudo atender esta petición: vuelva a la búsqueda.")  # fmt: skip
    return await http_exception_handler(request, exc)


def _request_values(request: Request) -> list[str]:
    return [*request.path_params.values(), *request.query_params.values()]


async def _library_error(request: Request, exc: LegalSearchError) -> JSONResponse | HTMLResponse:
    """A usage error is the client's (400, the library's line without its echoes or paths); a damaged index or
    a model that cannot load is the server's (503: the operator's log has the line, the client a short one)."""
    if isinstance(exc, UsageError):
        status, detail = 400, redacted(str(exc), _request_values(request))
        spanish = "No se pudo atender esta petición: revise los datos de la página y vuelva a intentarlo."
    else:
        log.error("%s %s: %s", request.method, request.url.path, bounded(str(exc), 2000))
        status = 503
        detail = (
            "the embedding model could not be loaded; the server's log says why"
            if isinstance(exc, ModelError)
            else "the index could not be read (damaged or incomplete); the server's log names the file"
        )
        spanish = "El índice no se puede consultar en este momento: inténtelo más tarde o avise a quien lo mantiene."
    if is_page(request.url.path):
        return _page(request, status, spanish)
    return JSONResponse({"detail": detail}, status_code=status)


async def _internal_error(request: Request, exc: Exception) -> Response:
    """A bug: the operator's log gets the traceback (Starlette raises it again after this answer); the client one
    line, or a Spanish page, saying nothing of what failed."""
    if is_page(request.url.path):
        try:
            return _page(request, 500, "Error interno: inténtelo más tarde o avise a quien mantiene este buscador.")
        except Exception:  # the page itself cannot be rendered: the plain line
            return Response("Error interno", status_code=500, media_type="text/plain; charset=utf-8")
    return JSONResponse({"detail": "internal error: the server's log says what happened"}, status_code=500)


def _no_law(boe_id: str) -> HTTPException:
    return HTTPException(404, f"boe_id {shown(boe_id)!r}: no such law in this index; GET /laws lists them")


def _no_unit(boe_id: str, article_id: str) -> HTTPException:
    detail = f"article_id {shown(article_id)!r}: no such unit in this law; GET /laws/{shown(boe_id)} lists them"
    return HTTPException(404, detail)


# --- middleware -----------------------------------------------------------------------------------------------


async def _send_json(send, status: int, detail: str, headers: list[tuple[bytes, bytes]] = ()) -> None:
    response = JSONResponse({"detail": detail}, status_code=status)
    response.raw_headers.extend(headers)
    await response({"type": "http"}, None, send)


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
        await _send_json(send, 413, f"request body over {self.limit:,} bytes; send fewer or shorter queries")


class HeadAsGet:
    """ASGI middleware: HEAD (curl -I, link checkers, uptime monitors) answered as GET without the body; FastAPI's
    routes take GET only and answered 405."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            return await self.app(scope, receive, send)

        async def send_head(message) -> None:
            if message["type"] == "http.response.body":
                message = {**message, "body": b""}
            await send(message)

        return await self.app({**scope, "method": "GET"}, receive, send_head)


class Guard:
    """ASGI middleware. With `hosts`, the `Host` header must be one of them (400 otherwise): a server on
    127.0.0.1 that answers any Host can be read by a web page whose name is re-pointed at 127.0.0.1 (DNS
    rebinding). With `token`, every request must carry it (401 otherwise): `Authorization: Bearer TOKEN`, or
    HTTP Basic with the token as password (browsers ask for it on the pages and /docs)."""

    def __init__(self, app, token: str | None = None, hosts: frozenset[str] | None = None) -> None:
        self.app = app
        self.token = token.encode() if token else None
        self.hosts = hosts

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        host_known = self.hosts is None or headers.get(b"host", b"").decode("latin-1").lower() in self.hosts
        authorised = self.token is None or self._authorised(headers.get(b"authorization", b""))
        if scope["type"] == "websocket" and not (host_known and authorised):
            return await send({"type": "websocket.close", "code": 1008})  # no HTTP answer on that channel
        if not host_known:
            detail = (
                "the Host header names a site this server does not serve; open it as "
                f"{' or '.join(sorted(self.hosts)[:3])} (serve --allowed-host NAME adds a name)"
            )
            return await _send_json(send, 400, detail)
        if not authorised:
            return await self._ask_for_token(scope["path"], send)
        return await self.app(scope, receive, send)

    @staticmethod
    async def _ask_for_token(path: str, send) -> None:
        """401: a browser (the pages, /docs and what they load: CSS, Swagger's files, the schema) is asked for the
        token as a password, so that it sends the password it was given for a page with everything the page
        loads; a program gets one line."""
        if is_page(path) or path.startswith(BROWSER_PATHS):
            challenge = [(b"www-authenticate", b'Basic realm="legalsearch", charset="UTF-8"')]
            if is_page(path):
                response = HTMLResponse(TOKEN_PAGE, status_code=401)
                response.raw_headers.extend(challenge)
                return await response({"type": "http"}, None, send)
        else:
            challenge = [(b"www-authenticate", b'Bearer realm="legalsearch"')]
        detail = "this server needs its token: send the header Authorization: Bearer TOKEN"
        await _send_json(send, 401, detail, challenge)

    def _authorised(self, header: bytes) -> bool:
        scheme, _, credentials = header.partition(b" ")
        if scheme.lower() == b"bearer":
            given = credentials.strip()
        elif scheme.lower() == b"basic":
            try:
                given = base64.b64decode(credentials.strip(), validate=True).partition(b":")[2]
            except ValueError:
                return False
        else:
            return False
        return hmac.compare_digest(given, self.token)


class SecurityHeaders:
    """ASGI middleware, outermost (outside Starlette's handler of 500s too): the Content-Security-Policy,
    `nosniff` and `no-referrer` on every response, the refusals of the middleware inside it (400, 401, 413) and
    the answer to a bug (500) included."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        docs = scope["path"].startswith(("/docs", "/static-offline-docs"))
        added = [
            (b"content-security-policy", (DOCS_CSP if docs else PAGE_CSP).encode()),
            (b"x-content-type-options", b"nosniff"),
            (b"referrer-policy", b"no-referrer"),
        ]

        async def send_with_headers(message) -> None:
            if message["type"] == "http.response.start":
                names = {name.lower() for name, _ in message.get("headers", [])}
                extra = [(name, value) for name, value in added if name not in names]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        return await self.app(scope, receive, send_with_headers)


def is_loopback(host: str) -> bool:
    """Whether binding `host` keeps the server on this machine."""
    if host.strip("[]").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def allowed_hosts(host: str, port: int, names: list[str] | tuple[str, ...] = ()) -> frozenset[str] | None:
    """The `Host` headers a server bound to `host`:`port` answers: on loopback its loopback names and the address
    bound, with that port (and bare on port 80), plus `names` (bare or with the port); off loopback only `names`
    and the bound address, or None (any) when no name is given."""
    named = {n.lower() for name in names for n in (name, f"{name}:{port}")}
    bare = host.strip("[]")
    bound = (f"[{bare}]" if ":" in bare else bare).lower()
    if is_loopback(host):  # the loopback names, and the address bound (127.0.0.2 is loopback too)
        local = {f"{n}:{port}" for n in (*LOOPBACK_NAMES, bound)}
        return frozenset(local | ({*LOOPBACK_NAMES, bound} if port == 80 else set()) | named)
    if not names:
        return None
    return frozenset(named | {f"{bound}:{port}"})


# --- the app --------------------------------------------------------------------------------------------------


def public_model(model_id: str) -> tuple[str, str]:
    """(what to show, where it comes from): a Hugging Face id as it is; a local folder by its name only."""
    looks_local = model_id.startswith(("/", ".", "~", "\\")) or model_id.count("/") > 1 or ":" in model_id[:3]
    if looks_local or FilePath(model_id).expanduser().is_absolute():
        return FilePath(model_id.rstrip("/\\")).name, "local folder"
    return model_id, "hub"


def public_law(law: dict) -> dict:
    """A law as the API shows it: without `origin` (a path on the server)."""
    return {key: value for key, value in law.items() if key != "origin"}


def create_app(search: LegalSearch, token: str | None = None, hosts: frozenset[str] | None = None) -> FastAPI:
    """The API and the pages over an open index. `token`: required of every request; `hosts`: the `Host`
    headers answered (None: any; `allowed_hosts` gives what `serve` uses)."""
    from fastapi_offline import FastAPIOffline

    examples = Examples(search)
    app = FastAPIOffline(
        title="legalsearch",
        version=__version__,
        description="Semantic search over Spanish legislation (BOE), article by article, with citations. Errors "
        f'are `{{"detail": "<one line>"}}`; bodies over {MAX_BODY_BYTES:,} bytes get 413.'
        + (" Every request needs `Authorization: Bearer TOKEN`." if token else ""),
        redoc_url=None,
    )
    if token:
        _document_the_token(app)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(LegalSearchError, _library_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _internal_error)
    add_pages(app, search)
    app.add_middleware(HeadAsGet)
    app.add_middleware(BodyLimit)
    app.add_middleware(Guard, token=token, hosts=hosts)
    build_stack = app.build_middleware_stack
    app.build_middleware_stack = lambda: SecurityHeaders(build_stack())  # outside Starlette's own 500 too

    def run(queries: list[str], options: SearchOptions) -> list[list[dict]]:
        try:
            results = search.search_many(
                queries, k=options.k, dim=options.dim, mode=options.mode, filters=options.filters.to_filters(),
                shortlist=options.shortlist,
            )  # fmt: skip
        except QueryError as exc:
            raise HTTPException(400, redacted(str(exc), [*queries, *options.filters.values()])) from None
        return [[hit.to_dict() for hit in hits] for hits in results]

    @app.post("/search", summary="The articles that best answer a question")
    def search_one(
        request: Annotated[SearchRequest, Body(openapi_examples=examples.search())],
    ) -> server_models.SearchResponse:
        [hits] = run([request.query], request)
        return {"query": request.query, "hits": hits}

    @app.post("/search/batch", summary="Several questions, encoded in one batch")
    def search_batch(
        request: Annotated[BatchRequest, Body(openapi_examples=examples.batch())],
    ) -> server_models.BatchResponse:
        results = run(request.queries, request)
        return {"results": [{"query": q, "hits": h} for q, h in zip(request.queries, results, strict=True)]}

    @app.get("/laws", summary="The laws in the index")
    def laws() -> list[server_models.LawSummary]:
        return [public_law(law) for law in search.laws()]

    LawId = Annotated[str, Path(max_length=40, description="BOE id", openapi_examples=examples.law_id())]
    UnitId = Annotated[str, Path(max_length=60, description="unit id (a14, da1 …)", openapi_examples=examples.unit())]

    @app.get("/laws/{boe_id}", summary="One law and the list of its units")
    def law(boe_id: LawId) -> server_models.Law:
        found = search.law(boe_id)
        if found is None:
            raise _no_law(boe_id)
        return public_law(found)

    @app.get("/laws/{boe_id}/articles/{article_id}", summary="One unit of a law, with its text")
    def article(
        boe_id: LawId,
        article_id: UnitId,
        as_of: Annotated[
            Day, Query(description="the wording of that day (YYYY-MM-DD)", openapi_examples=examples.as_of())
        ] = None,
    ) -> server_models.Article:
        found = search.article(boe_id, article_id, as_of)
        if found is None and as_of is not None and search.article(boe_id, article_id) is not None:
            raise HTTPException(404, f"as_of: that unit was not in force on {as_of}; its wordings list when it was")
        if found is None:
            raise _no_law(boe_id) if search.law(boe_id) is None else _no_unit(boe_id, article_id)
        return found

    @app.get("/laws/{boe_id}/articles/{article_id}/diff", summary="Word-level diff of a unit between two dates")
    def article_diff(
        boe_id: LawId,
        article_id: UnitId,
        date_from: Annotated[
            Day, Query(alias="from", description="the earlier date (YYYY-MM-DD)", openapi_examples=examples.since())
        ] = None,
        date_to: Annotated[
            Day, Query(alias="to", description="the later date (YYYY-MM-DD)", openapi_examples=examples.until())
        ] = None,
    ) -> server_models.Diff:
        if date_from is None or date_to is None:
            raise HTTPException(status_code=422, detail="give both dates: ?from=YYYY-MM-DD&to=YYYY-MM-DD")
        try:
            return search.diff(boe_id, article_id, date_from, date_to)
        except QueryError as exc:
            if all(search.article(boe_id, article_id, day) is None for day in (None, date_from, date_to)):
                raise _no_law(boe_id) if search.law(boe_id) is None else _no_unit(boe_id, article_id) from None
            raise HTTPException(400, redacted(str(exc), [boe_id, article_id])) from None

    @app.get("/changes", summary="Units whose wording changed since a date, by law")
    def changes(
        since: Annotated[
            Day, Query(description="from this date on (YYYY-MM-DD)", openapi_examples=examples.since())
        ] = None,
        until: Annotated[Day, Query(description="up to this date (YYYY-MM-DD)")] = None,
        law: Annotated[
            list[Annotated[str, Field(max_length=40)]] | None,
            Query(max_length=50, description="only these laws (BOE ids)"),
        ] = None,
    ) -> list[server_models.LawChanges]:
        if since is None:
            raise HTTPException(status_code=422, detail="give a date: ?since=YYYY-MM-DD")
        return search.changes(since, until, tuple(law or ()))

    @app.get("/syncs", summary="The sync runs since a date: norms new, changed, derogated, removed")
    def syncs(
        since: Annotated[Day, Query(description="from this date on (YYYY-MM-DD)")] = None,
    ) -> list[server_models.SyncRun]:
        return [_public_sync(run) for run in search.syncs(since)]

    @app.get("/health", summary="Liveness and what is loaded")
    def health() -> server_models.Health:
        search.refresh()
        manifest = search.manifest
        model, model_source = public_model(manifest["model"]["id"])
        return {
            "status": "ok",
            "commit": search.commit,
            "updated": manifest.get("updated"),
            "version": __version__,
            "index": search.path.name,
            "model": model,
            "model_source": model_source,
            "runtime": " ".join(recorded_runtime(manifest["model"])),
            "dims": manifest["dims"],
            "default_mode": search.default_mode,
            "counts": manifest["counts"],
        }

    return app


def _document_the_token(app: FastAPI) -> None:
    """The schema says every operation needs the bearer token (Swagger's "Authorize" button asks for it)."""
    build = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is None:
            schema = build()
            schema.setdefault("components", {})["securitySchemes"] = {
                "token": {"type": "http", "scheme": "bearer", "description": "the token `serve` was started with"}
            }
            schema["security"] = [{"token": []}]
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi


def _public_sync(run: dict) -> dict:
    failed = run.get("failed")
    if isinstance(failed, dict):
        run = {**run, "failed": {boe_id: redacted(str(why)) for boe_id, why in failed.items()}}
    return run


class Examples:
    """The examples /docs offers, taken from the index served so that each one answers 200 (a law it holds, a
    unit of that law, dates when the unit was in force); static ones where the index is empty."""

    def __init__(self, search: LegalSearch) -> None:
        self.boe_id, self.article_id = self._unit(search)
        found = search.article(self.boe_id, self.article_id) or {}
        dated = [w["version_date"] for w in found.get("wordings", []) if w["version_date"]]
        today = datetime.date.today().isoformat()
        self.dates = (dated[0], found.get("version_date") or dated[-1]) if dated else (today, today)

    @staticmethod
    def _unit(search: LegalSearch) -> tuple[str, str]:
        """A unit with several wordings where the index holds them (so the diff shows a change), else the first
        article of the first law."""
        if search.has_history:
            for law in search.changes("1000-01-01"):
                return law["boe_id"], law["changes"][0]["article_id"]
        laws = search.laws()
        if not laws:
            return "BOE-A-1978-31229", "a1"
        units = (search.law(laws[0]["boe_id"]) or {}).get("units") or [{"kind": "articulo", "article_id": "a1"}]
        chosen = next((u for u in units if u["kind"] == "articulo"), units[0])
        return laws[0]["boe_id"], chosen["article_id"]

    def search(self) -> dict:
        return {
            "question": {"summary": "A question", "value": {"query": EXAMPLE_QUESTION, "k": 5}},
            "one law, in force": {
                "summary": "Only one law, leaving out repealed units",
                "value": {"query": EXAMPLE_QUESTION, "k": 3, "filters": {"laws": [self.boe_id], "vigentes": True}},
            },
            "as of a day": {
                "summary": "The wordings in force on a day, by words only (BM25)",
                "value": {"query": EXAMPLE_QUESTION, "mode": "lexical", "filters": {"as_of": self.dates[0]}},
            },
        }

    def batch(self) -> dict:
        value = {"queries": [EXAMPLE_QUESTION, "¿A qué edad se alcanza la mayoría de edad?"], "k": 3}
        return {"two questions": {"summary": "Two questions in one request", "value": value}}

    def law_id(self) -> dict:
        return {"law": {"summary": "A law this index holds", "value": self.boe_id}}

    def unit(self) -> dict:
        return {"unit": {"summary": "A unit of that law", "value": self.article_id}}

    def as_of(self) -> dict:
        return {"day": {"summary": "A day that unit was in force", "value": self.dates[1]}}

    def since(self) -> dict:
        return {"day": {"summary": "An earlier day", "value": self.dates[0]}}

    def until(self) -> dict:
        return {"day": {"summary": "A later day", "value": self.dates[1]}}
