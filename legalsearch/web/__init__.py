"""The web page lawyers use, served by `legalsearch serve` beside the JSON API: search, a law and its table of
contents, a unit with its wordings and the diff between two of them, and the change feed. In Spanish; rendered
on the server with Jinja2 (every piece of law text escaped), no JavaScript needed, no request to another host,
and a Content-Security-Policy on every response."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import quote

from markupsafe import Markup, escape

from ..dates import check_day
from ..echoes import shown
from ..errors import LegalSearchError, QueryError, UsageError
from ..modes import MODES, SEARCH_MODES
from ..search import Filters, LegalSearch, NoEarlierWordings
from .present import (
    article_for,
    bare_title,
    citation_label,
    contents,
    heading_title,
    law_name,
    neighbours,
    norm_names,
    snippet,
    spanish_date,
    unit_number,
)

HERE = Path(__file__).resolve().parent
PAGE_CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; object-src 'none'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
DOCS_CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; script-src 'self' 'unsafe-inline'; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)
PAGE_PATHS = ("/", "/cambios")
FIELD_LABELS = {
    "q": "La pregunta", "modo": "«Cómo buscar»", "ley": "«Ley»", "rango": "«Rango»", "vigentes": "«Solo en vigor»",
    "fecha": "«A fecha de»", "desde": "«Desde»", "hasta": "«Hasta»", "k": "El número de resultados",
    "boe_id": "La ley", "article_id": "El artículo",
}  # fmt: skip
MODE_LABELS = {mode.name: mode.label_es for mode in MODES}
MAX_PAGES = 10  # "más resultados" goes this many pages deep
WORD = re.compile(r"\w+|\W+")
TYPED_DAY = re.compile(r"^\s*(\d{1,2})[/.-](\d{1,2})[/.-](\d{4})\s*$")
CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # all but tab and newline


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


def is_page(path: str) -> bool:
    """Whether `path` is one of the Spanish pages (their errors are pages too, in Spanish), not the JSON API."""
    return path in PAGE_PATHS or path == "/ley" or path.startswith("/ley/")


def spanish_day(day: str | None) -> str:
    """ "2011-09-27" → "27 de septiembre de 2011"."""
    return spanish_date(day) if day else "una fecha desconocida"


def bad_date(field: str) -> str:
    return f"{FIELD_LABELS[field]} no es una fecha válida: elija un día del calendario (por ejemplo, 27/09/2011)."


def field_problem(field: str) -> str:
    """The Spanish line for a page parameter FastAPI refused (too long, not a number …), naming the field."""
    if field == "q":
        return "La pregunta es demasiado larga: escriba como máximo 4.000 caracteres."
    if field == "k":
        return "El número de resultados debe estar entre 1 y 50."
    if field == "pagina":
        return f"La página de resultados debe estar entre 1 y {MAX_PAGES}."
    if field in ("fecha", "desde", "hasta"):
        return bad_date(field)
    if field in FIELD_LABELS:
        return f"{FIELD_LABELS[field]} no es una opción válida: elija una de la lista."
    return "La dirección de esta página no es válida: vuelva a la búsqueda."


def iso_day(text: str) -> str:
    """A date as a Spanish lawyer types it ("27/09/2011", "27-09-2011", "27.09.2011") as the ISO day the index
    speaks ("2011-09-27"); anything else as given (then checked as a date)."""
    m = TYPED_DAY.match(text)
    return f"{m[3]}-{int(m[2]):02d}-{int(m[1]):02d}" if m else text


def without_controls(text: str) -> str:
    """A question as typed, without control characters (a NUL, an escape sequence): a question made only of them
    is no question."""
    return CONTROLS.sub("", text)


def _first_bad_date(**days: str) -> str | None:
    for field, day in days.items():
        if day:
            try:
                check_day(day, field)
            except UsageError:
                return bad_date(field)
    return None


def _asked(q: str, modo: str | None, ley: str, rango: str, vigentes: bool, fecha: str, k: int) -> dict:
    """The search's parameters as the page's links repeat them (with another `pagina`), empty ones left out."""
    asked = {"q": q, "modo": modo or "", "ley": ley, "rango": rango, "vigentes": "true" if vigentes else "",
             "fecha": fecha, "k": "" if k == 10 else str(k)}  # fmt: skip
    return {name: value for name, value in asked.items() if value}


class Pages:
    """Renders the pages of one open index."""

    def __init__(self, search: LegalSearch) -> None:
        from jinja2 import Environment, FileSystemLoader, select_autoescape

        self.search = search
        self.env = Environment(
            loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(default=True),
            trim_blocks=True, lstrip_blocks=True,
        )  # fmt: skip
        self.env.globals.update(
            modes=SEARCH_MODES,
            mode_labels=MODE_LABELS,
            snippet=snippet,
            label=citation_label,
            heading_title=heading_title,
        )
        self.env.filters.update(
            highlight=highlight,
            fecha=spanish_date,
            sin_punto=bare_title,
            ley_corta=law_name,
            articulo=article_for,
            numero=unit_number,
        )

    def render(self, name: str, **context) -> str:
        return self.env.get_template(name).render(**context)

    def search_page(
        self, q: str, modo: str | None, ley: str, rango: str, vigentes: bool, fecha: str, k: int, pagina: int = 1
    ) -> tuple[int, str]:
        """The search form and, for a question, page `pagina` of its results (`k` a page), how many, whether
        there are more, and whether any answers well (`Hit.good_match`)."""
        laws = self.search.laws()
        rangos = sorted({law["rango"] for law in laws if law["rango"]})
        hits, error, more, good = [], None, False, True
        if q.strip():
            error = self._search_problem(laws, rangos, ley, rango, fecha)
        if q.strip() and error is None:
            filters = Filters.build(ley, rango, None, vigentes, fecha)
            try:
                found = self.search.search(q, k=pagina * k + 1, mode=modo or None, filters=filters)
                hits, more = found[(pagina - 1) * k : pagina * k], len(found) > pagina * k and pagina < MAX_PAGES
                good = any(hit.good_match for hit in found)
            except QueryError:
                error = "No se pudo hacer esta búsqueda: pruebe con otra pregunta u otros filtros."
        page = self.render(
            "search.html", q=q, modo=modo or self.search.default_mode, ley=ley, rango=rango, vigentes=vigentes,
            fecha=fecha, hits=hits, error=error, laws=laws, rangos=rangos, pagina=pagina, more=more, good=good,
            first=(pagina - 1) * k + 1, asked=_asked(q, modo, ley, rango, vigentes, fecha, k),
        )  # fmt: skip
        return (400 if error else 200), page

    @staticmethod
    def _search_problem(laws: list[dict], rangos: list[str], ley: str, rango: str, fecha: str) -> str | None:
        """What is wrong with the search form's filters, in Spanish, or None."""
        if ley and ley not in {law["boe_id"] for law in laws}:
            return "La ley elegida no está en este índice: elija otra en «Ley», o «Todas»."
        if rango and rango.casefold() not in {r.casefold() for r in rangos}:
            return "El rango elegido no está en este índice: elija otro en «Rango», o «Todos»."
        return _first_bad_date(fecha=fecha)

    def error_page(self, status: int, message: str, link: tuple[str, str] | None = None) -> tuple[int, str]:
        """A Spanish error page: one line saying what happened and what to do, and a way back."""
        return status, self.render("error.html", message=message, link=link)

    def law_page(self, boe_id: str) -> tuple[int, str]:
        law = self.search.law(boe_id)
        if law is None:
            return self.error_page(
                404, f"La ley «{shown(boe_id)}» no está en este índice: búsquela desde la página de búsqueda."
            )
        from ..citations import short_name

        return 200, self.render("law.html", law=law, short_name=short_name(boe_id), tree=contents(law["units"]))

    def article_page(self, boe_id: str, article_id: str, fecha: str, desde: str, hasta: str) -> tuple[int, str]:
        problem = _first_bad_date(fecha=fecha, desde=desde, hasta=hasta)
        if problem:
            return self.error_page(400, problem)
        law = self.search.law(boe_id)
        if law is None:
            return self.law_page(boe_id)
        unit = self.search.article(boe_id, article_id, fecha or None)
        if unit is None:
            return self._missing_unit(boe_id, article_id, fecha)
        problem = self._diff_problem(boe_id, article_id, desde, hasta) if desde and hasta else None
        if problem:
            here = f"/ley/{quote(boe_id, safe='')}/{quote(article_id, safe='')}"
            return self.error_page(400, problem, (here, "Ver la redacción vigente"))
        try:
            diff = self.search.diff(boe_id, article_id, desde, hasta) if desde and hasta else None
        except NoEarlierWordings:
            message = "Este índice no guarda redacciones anteriores de esta ley: no puede compararlas."
            return self.error_page(400, message, (f"/ley/{quote(boe_id, safe='')}/{quote(article_id, safe='')}",
                                                  "Ver la redacción vigente"))  # fmt: skip
        except LegalSearchError:
            return self.error_page(400, "No se pudieron comparar estas redacciones: elija otras fechas.")
        wordings = unit["wordings"]
        dated = [w["version_date"] for w in wordings if w["version_date"]]
        defaults = {"desde": desde or (dated[0] if dated else ""), "hasta": hasta or (dated[-1] if dated else "")}
        before, after = neighbours(law["units"], unit["article_id"])
        return 200, self.render(
            "article.html", law=law, unit=unit, diff=diff, fecha=fecha, paragraphs=unit["text"].split("\n"),
            before=before, after=after, names=norm_names(law, self._titles()), **defaults,
        )  # fmt: skip

    def _titles(self) -> dict[str, str]:
        return {law["boe_id"]: law["title"] for law in self.search.laws()}

    def _missing_unit(self, boe_id: str, article_id: str, fecha: str) -> tuple[int, str]:
        law_url = f"/ley/{quote(boe_id, safe='')}"
        if fecha and self.search.article(boe_id, article_id) is not None:
            message = f"Este artículo no estaba en vigor el {spanish_day(fecha)}: elija otra fecha o vea el de hoy."
            here = f"{law_url}/{quote(article_id, safe='')}"
            return self.error_page(404, message, (here, "Ver la redacción vigente"))
        message = f"Esta ley no tiene el artículo «{shown(article_id)}»: búsquelo en el índice de la ley."
        return self.error_page(404, message, (law_url, "Ver el índice de la ley"))

    def _diff_problem(self, boe_id: str, article_id: str, desde: str, hasta: str) -> str | None:
        """Why the wordings of `desde` and `hasta` cannot be compared, in Spanish, or None."""
        if not self.search.has_history:
            return "Este índice solo guarda la redacción vigente de cada artículo: no puede comparar redacciones."
        for day in (desde, hasta):
            if self.search.article(boe_id, article_id, day) is None:
                return (
                    f"El artículo no estaba en vigor el {spanish_day(day)}: elija fechas en las que lo estuviera "
                    "(la lista de redacciones dice desde cuándo)."
                )
        return None

    def changes_page(self, desde: str) -> tuple[int, str]:
        feed, error = [], _first_bad_date(desde=desde)
        if desde and error is None:
            try:
                feed = self.search.changes(desde)
            except QueryError:
                error = "No se pudieron listar los cambios: elija otra fecha."
        titles, names = self._titles(), {}
        for law in feed:
            names.update(norm_names(self.search.law(law["boe_id"]), titles))
        return (400 if error else 200), self.render("changes.html", desde=desde, feed=feed, error=error, names=names)


def add_pages(app, search: LegalSearch) -> None:
    """Register the HTML pages and their CSS on `app` (the JSON API keeps its own paths), and the CSP header."""
    from fastapi import Query
    from fastapi.responses import HTMLResponse
    from fastapi.staticfiles import StaticFiles

    pages = Pages(search)
    app.state.pages = pages  # the server's error handlers render page errors with it
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")

    def html(result: tuple[int, str]) -> HTMLResponse:
        status, body = result
        return HTMLResponse(body, status_code=status)

    @app.get("/", include_in_schema=False)
    def home(
        q: str = Query("", max_length=4000), modo: str = Query("", max_length=20), ley: str = Query("", max_length=40),
        rango: str = Query("", max_length=100), vigentes: bool = False, fecha: str = Query("", max_length=10),
        k: int = Query(10, ge=1, le=50), pagina: int = Query(1, ge=1, le=MAX_PAGES),
    ) -> HTMLResponse:  # fmt: skip
        mode = modo if modo in SEARCH_MODES else None
        return html(pages.search_page(without_controls(q), mode, ley, rango, vigentes, iso_day(fecha), k, pagina))

    @app.get("/ley/{boe_id}", include_in_schema=False)
    def law(boe_id: str) -> HTMLResponse:
        return html(pages.law_page(boe_id[:40]))

    @app.get("/ley/{boe_id}/{article_id}", include_in_schema=False)
    def article(
        boe_id: str, article_id: str, fecha: str = Query("", max_length=10), desde: str = Query("", max_length=10),
        hasta: str = Query("", max_length=10),
    ) -> HTMLResponse:  # fmt: skip
        return html(pages.article_page(boe_id[:40], article_id[:60], iso_day(fecha), iso_day(desde), iso_day(hasta)))

    @app.get("/cambios", include_in_schema=False)
    def changes(desde: str = Query("", max_length=10)) -> HTMLResponse:
        return html(pages.changes_page(iso_day(desde)))

    # the CSP and the other security headers are set by the server (legalsearch.server.SecurityHeaders), on
    # every response, its own refusals (401, 413) included
