"""The web page lawyers use, served by `legalsearch serve` beside the JSON API: search, a law and its table of
contents, a unit with its wordings and the diff between two of them, and the change feed. In Spanish; rendered
on the server with Jinja2 (every piece of law text escaped), no JavaScript needed, no request to another host,
and a Content-Security-Policy on every response."""

from __future__ import annotations

import re
from pathlib import Path

from markupsafe import Markup, escape

from ..errors import LegalSearchError, QueryError
from ..search import SEARCH_MODES, Filters, LegalSearch

HERE = Path(__file__).resolve().parent
PAGE_CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; object-src 'none'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
DOCS_CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; script-src 'self' 'unsafe-inline'"
)
MODE_LABELS = {"hybrid": "Híbrido", "dense": "Semántico", "funnel": "Semántico rápido", "lexical": "Palabras (BM25)"}
WORD = re.compile(r"\w+|\W+")


def highlight(text: str, query: str) -> Markup:
    """`text` escaped, with the words that match the query's (by stem, as BM25 matches them) in <mark>."""
    from ..lexical import stem, stems

    wanted = stems(query)
    parts = []
    for token in WORD.findall(text):
        if token[0].isalnum() and len(token) > 2 and stem(token) in wanted:
            parts.append(Markup("<mark>{}</mark>").format(token))
        else:
            parts.append(escape(token))
    return Markup("").join(parts)


def contents_tree(units: list[dict]) -> list[dict]:
    """The table of contents: nested {"title", "children", "units"} from each unit's path, in the law's order."""
    root: dict = {"title": None, "children": [], "units": []}
    for unit in units:
        node = root
        for heading in unit["path"]:
            if not node["children"] or node["children"][-1]["title"] != heading:
                node["children"].append({"title": heading, "children": [], "units": []})
            node = node["children"][-1]
        node["units"].append(unit)
    return [root] if root["units"] and not root["children"] else [*([root] if root["units"] else []), *root["children"]]


class Pages:
    """Renders the pages of one open index."""

    def __init__(self, search: LegalSearch) -> None:
        from jinja2 import Environment, FileSystemLoader, select_autoescape

        self.search = search
        self.env = Environment(
            loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(default=True),
            trim_blocks=True, lstrip_blocks=True,
        )  # fmt: skip
        self.env.globals.update(modes=SEARCH_MODES, mode_labels=MODE_LABELS)
        self.env.filters["highlight"] = highlight

    def render(self, name: str, **context) -> str:
        return self.env.get_template(name).render(**context)

    def search_page(
        self, q: str, modo: str | None, ley: str, rango: str, vigentes: bool, fecha: str, k: int
    ) -> tuple[int, str]:
        laws = self.search.laws()
        rangos = sorted({law["rango"] for law in laws if law["rango"]})
        hits, error = [], None
        if q.strip():
            filters = Filters((ley,) if ley else (), (rango,) if rango else (), (), vigentes, fecha or None)
            try:
                hits = self.search.search(q, k=k, mode=modo or None, filters=filters)
            except QueryError as exc:
                error = str(exc)
        page = self.render(
            "search.html", q=q, modo=modo or self.search.default_mode, ley=ley, rango=rango, vigentes=vigentes,
            fecha=fecha, hits=hits, error=error, laws=laws, rangos=rangos,
        )  # fmt: skip
        return (400 if error else 200), page

    def law_page(self, boe_id: str) -> tuple[int, str]:
        law = self.search.law(boe_id)
        if law is None:
            return 404, self.render("error.html", message=f"La ley {boe_id} no está en este índice.")
        from ..citations import short_name

        return 200, self.render("law.html", law=law, short_name=short_name(boe_id), tree=contents_tree(law["units"]))

    def article_page(self, boe_id: str, article_id: str, fecha: str, desde: str, hasta: str) -> tuple[int, str]:
        law = self.search.law(boe_id)
        try:
            unit = self.search.article(boe_id, article_id, fecha or None)
            diff = self.search.diff(boe_id, article_id, desde, hasta) if desde and hasta else None
        except LegalSearchError as exc:
            return 400, self.render("error.html", message=str(exc))
        if law is None or unit is None:
            when = f" el {fecha}" if fecha else ""
            return 404, self.render("error.html", message=f"{boe_id} no tiene la unidad {article_id!r}{when}.")
        wordings = unit["wordings"]
        dated = [w["version_date"] for w in wordings if w["version_date"]]
        defaults = {"desde": desde or (dated[0] if dated else ""), "hasta": hasta or (dated[-1] if dated else "")}
        return 200, self.render(
            "article.html", law=law, unit=unit, diff=diff, fecha=fecha, paragraphs=unit["text"].split("\n"),
            **defaults,
        )  # fmt: skip

    def changes_page(self, desde: str) -> tuple[int, str]:
        feed, error = [], None
        if desde:
            try:
                feed = self.search.changes(desde)
            except QueryError as exc:
                error = str(exc)
        return (400 if error else 200), self.render("changes.html", desde=desde, feed=feed, error=error)


def add_pages(app, search: LegalSearch) -> None:
    """Register the HTML pages and their CSS on `app` (the JSON API keeps its own paths), and the CSP header."""
    from fastapi import Query
    from fastapi.responses import HTMLResponse
    from fastapi.staticfiles import StaticFiles

    pages = Pages(search)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")

    def html(result: tuple[int, str]) -> HTMLResponse:
        status, body = result
        return HTMLResponse(body, status_code=status)

    @app.get("/", include_in_schema=False)
    def home(
        q: str = Query("", max_length=4000), modo: str = Query("", max_length=20), ley: str = Query("", max_length=40),
        rango: str = Query("", max_length=100), vigentes: bool = False, fecha: str = Query("", max_length=10),
        k: int = Query(10, ge=1, le=50),
    ) -> HTMLResponse:  # fmt: skip
        return html(pages.search_page(q, modo if modo in SEARCH_MODES else None, ley, rango, vigentes, fecha, k))

    @app.get("/ley/{boe_id}", include_in_schema=False)
    def law(boe_id: str) -> HTMLResponse:
        return html(pages.law_page(boe_id[:40]))

    @app.get("/ley/{boe_id}/{article_id}", include_in_schema=False)
    def article(
        boe_id: str, article_id: str, fecha: str = Query("", max_length=10), desde: str = Query("", max_length=10),
        hasta: str = Query("", max_length=10),
    ) -> HTMLResponse:  # fmt: skip
        return html(pages.article_page(boe_id[:40], article_id[:60], fecha, desde, hasta))

    @app.get("/cambios", include_in_schema=False)
    def changes(desde: str = Query("", max_length=10)) -> HTMLResponse:
        return html(pages.changes_page(desde))

    @app.middleware("http")
    async def content_security_policy(request, call_next):
        response = await call_next(request)
        docs = request.url.path.startswith(("/docs", "/static-offline-docs"))
        response.headers["Content-Security-Policy"] = DOCS_CSP if docs else PAGE_CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        return response
