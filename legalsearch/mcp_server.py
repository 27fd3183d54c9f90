"""`legalsearch mcp`: the index as Model Context Protocol tools, on the official `mcp` SDK (MCPServer).

Tools: `search`, `get_article`, `list_laws`, `diff_wordings`, `changes`. Each answers in plain text an agent can
quote: every unit with its citation ("Art. 38 ET · <title> (BOE-A-2015-11430)") and its BOE link. Errors of the
request (an unknown law, an impossible date) come back as tool errors with one line saying what to change.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from .documents import law_label
from .errors import LegalSearchError
from .search import Filters, Hit, LegalSearch
from .wordings import plain_diff

INSTRUCTIONS = (
    "Buscador de legislación española consolidada (BOE), artículo por artículo, con citas y enlaces al BOE. "
    "Search Spanish legislation (BOE) article by article; quote the citation and the BOE link of what you use."
)
Day = Annotated[str | None, Field(description="Fecha / date, YYYY-MM-DD", pattern=r"^\d{4}-\d{2}-\d{2}$")]


def _hit_text(n: int, hit: Hit) -> str:
    lines = [f"[{n}] {hit.citation}", f"URL: {hit.url}"]
    if hit.path:
        lines.append("Ubicación: " + " › ".join(hit.path))
    lines.append(hit.heading)
    snippet = " ".join(hit.text.split())
    lines.append(snippet[:1500] + ("…" if len(snippet) > 1500 else ""))
    return "\n".join(lines)


def _article_text(unit: dict) -> str:
    short = f" {unit['short_name']}" if unit.get("short_name") else ""
    lines = [
        f"{unit['heading']}{short} · {law_label(unit['law_title'], unit['boe_id'])}",
        f"URL: {unit['url']}",
        f"Estado: {unit['status']}",
    ]
    if unit["path"]:
        lines.append("Ubicación: " + " › ".join(unit["path"]))
    if unit.get("version_date"):
        until = f" hasta el {unit['version_until']}" if unit.get("version_until") else ""
        lines.append(f"Redacción vigente desde el {unit['version_date']}{until}")
    lines += ["", unit["text"]]
    if len(unit["wordings"]) > 1:
        lines += ["", "Redacciones / wordings:"]
        for w in unit["wordings"]:
            lines.append(f"- desde {w['version_date']} hasta {w['version_until'] or 'hoy'}: {w['url']}")
    return "\n".join(lines)


def _diff_text(result: dict) -> str:
    lines = [f"{result['heading']} ({result['boe_id']}), [-suprimido-] {{+añadido+}}"]
    for side in ("from", "to"):
        w = result[side]
        lines.append(f"{w['date']}: redacción vigente desde el {w['version_date']} ({w['version_norma']}) {w['url']}")
    if not result["changed"]:
        return "\n".join([*lines, "Sin cambios entre las dos fechas."])
    return "\n".join([*lines, "", plain_diff(result["spans"])])


def create_server(search: LegalSearch):
    """The MCP server over an open index."""
    from mcp.server.mcpserver import MCPServer
    from mcp.server.mcpserver.exceptions import ToolError

    server = MCPServer(name="legalsearch", instructions=INSTRUCTIONS, log_level="ERROR")

    def answer(call):
        try:
            return call()
        except LegalSearchError as exc:
            raise ToolError(str(exc)) from None

    @server.tool(
        name="search",
        description="Busca los artículos de la legislación española que mejor responden a una pregunta, con cita y "
        "enlace al BOE. Search Spanish law: the articles that best answer a question (in Spanish), cited. Filters: "
        "laws (BOE ids), rangos (Ley, Real Decreto …), kinds (articulos, disposiciones), vigentes (leave out "
        "repealed units), as_of (the law as it read that day), materias (BOE subject headings).",
    )
    def search_law(
        query: Annotated[str, Field(description="La pregunta / the question, in Spanish", max_length=4000)],
        k: Annotated[int, Field(ge=1, le=50, description="How many articles")] = 5,
        mode: Literal["dense", "funnel", "lexical", "hybrid"] | None = None,
        laws: list[str] | None = None,
        rangos: list[str] | None = None,
        kinds: list[str] | None = None,
        vigentes: bool = False,
        as_of: Day = None,
        materias: list[str] | None = None,
    ) -> str:
        filters = Filters(
            tuple(laws or ()), tuple(rangos or ()), tuple(kinds or ()), vigentes, as_of, tuple(materias or ())
        )
        hits = answer(lambda: search.search(query, k=k, mode=mode, filters=filters))
        if not hits:
            return "Sin resultados / no results for these filters."
        return "\n\n".join(_hit_text(n, hit) for n, hit in enumerate(hits, 1))

    @server.tool(
        description="Devuelve el texto completo de un artículo o disposición, su ubicación, su estado y todas sus "
        "redacciones con fechas y enlaces. Get one unit of a law: full text, path, status, wordings. article_id "
        "is the BOE anchor: a14, a135, da1, dt2, df1 …; as_of gives the wording in force that day."
    )
    def get_article(
        boe_id: Annotated[str, Field(description="BOE id, e.g. BOE-A-1978-31229", max_length=40)],
        article_id: Annotated[str, Field(description="a14, a135, da1 …", max_length=60)],
        as_of: Day = None,
    ) -> str:
        unit = answer(lambda: search.article(boe_id, article_id, as_of))
        if unit is None:
            when = f" on {as_of}" if as_of else ""
            raise ToolError(f"{boe_id} has no unit {article_id!r}{when}; list_laws and search find the ids")
        return _article_text(unit)

    @server.tool(
        description="Lista las leyes del índice (id BOE, nombre corto, título, rango, estado, número de unidades). "
        "List the laws the index holds; filter by rango or leave out repealed laws."
    )
    def list_laws(rango: str | None = None, vigentes: bool = False) -> str:
        laws = answer(search.laws)
        lines = []
        for law in laws:
            if (rango and (law["rango"] or "").lower() != rango.lower()) or (vigentes and law["status"] == "derogada"):
                continue
            link = f"https://www.boe.es/buscar/act.php?id={law['boe_id']}"
            lines.append(
                f"{law['boe_id']} · {law['title']} · {law['rango'] or '?'} · {law['status']} · "
                f"{law['articles']} unidades · {link}"
            )
        return "\n".join(lines) or "Ninguna ley / no laws match."

    @server.tool(
        description="Compara palabra a palabra las redacciones de un artículo vigentes en dos fechas. Word-level "
        "diff of a unit's wordings in force on two dates: [-removed-] {+added+}, with the modifying norm of each."
    )
    def diff_wordings(
        boe_id: Annotated[str, Field(max_length=40)],
        article_id: Annotated[str, Field(max_length=60)],
        date_from: Annotated[str, Field(description="YYYY-MM-DD", pattern=r"^\d{4}-\d{2}-\d{2}$")],
        date_to: Annotated[str, Field(description="YYYY-MM-DD", pattern=r"^\d{4}-\d{2}-\d{2}$")],
    ) -> str:
        return _diff_text(answer(lambda: search.diff(boe_id, article_id, date_from, date_to)))

    @server.tool(
        description="Artículos cuya redacción cambió desde una fecha, por ley, con la norma modificadora y enlaces. "
        "Units whose wording changed since a date, grouped by law, with the modifying norm and links."
    )
    def changes(
        since: Annotated[str, Field(description="YYYY-MM-DD", pattern=r"^\d{4}-\d{2}-\d{2}$")],
        until: Day = None,
        laws: list[str] | None = None,
    ) -> str:
        feed = answer(lambda: search.changes(since, until, tuple(laws or ())))
        lines = []
        for law in feed:
            lines.append(f"{law['boe_id']} {law['title']}")
            lines += [f"- {c['version_date']}: {c['heading']}, modificado por {c['version_norma']} "
                      f"({c['norma_url']}) {c['url']}" for c in law["changes"]]  # fmt: skip
        return "\n".join(lines) or f"Sin cambios desde el {since}."

    return server
