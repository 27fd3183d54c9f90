"""`legalsearch mcp`: the index as Model Context Protocol tools, on the official `mcp` SDK (MCPServer).

Tools: `search`, `get_article`, `list_laws`, `diff_wordings`, `changes`. Each answers twice: structured content
under a published output schema (each hit's BOE id, unit id, citation, URL, text, status, wording dates,
relevance) for a program, and the same in plain text an agent can quote. `get_article` takes what a lawyer
types ("ET", "56", "art. 56 bis") and pages long units. Arguments are checked strictly: an unknown argument is
refused, and every error is one line that names the field and never repeats more than a short, sanitised prefix
of what was sent.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError, UnexpectedToolError
from mcp.server.mcpserver.tools.base import Tool
from mcp.types import CallToolResult, TextContent
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from . import __version__
from .citations import short_name
from .echoes import bounded, redacted, shown
from .errors import LegalSearchError
from .modes import SEARCH_MODES
from .search import Filters, Hit, LegalSearch
from .terminal import clean
from .wordings import law_url, plain_diff

INSTRUCTIONS = (
    "Buscador de legislación española consolidada (BOE), artículo por artículo, con citas y enlaces al BOE. "
    "Search Spanish legislation (BOE) article by article; quote the citation and the BOE link of what you use. "
    "search gives each hit's boe_id and article_id: get_article(boe_id, article_id) reads the whole unit. "
    "good_match false on every hit means the index holds no good answer: say so rather than quote them."
)
DATE = r"^\d{4}-\d{2}-\d{2}$"
Day = Annotated[str | None, Field(description="Fecha / date, YYYY-MM-DD", pattern=DATE)]
BoeIds = Annotated[
    list[Annotated[str, Field(max_length=40)]] | None,
    Field(description="BOE ids (BOE-A-2015-11430) or short names (ET, CE, LPAC, LAU)", max_length=200),
]
UnitArg = Annotated[
    str, Field(description='the unit: "56", "art. 56 bis", "a56", "da1" (the article_id search gives)', max_length=60)
]
Names = Annotated[list[Annotated[str, Field(max_length=200)]] | None, Field(max_length=50)]
PASSAGE_CHARS = 3000  # a search hit carries its whole unit up to this length, else the passage that matched
PAGE_CHARS = 6000  # get_article's default page


# --- output schemas ---------------------------------------------------------------------------------------------
class Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class WordingOut(Out):
    version_date: str | None = Field(description="this wording came into force on this day (YYYY-MM-DD)")
    version_until: str | None = Field(description="… and stopped being in force on this day; null: in force")
    version_norma: str | None = Field(description="BOE id of the norm that gave this wording")
    url: str = Field(description="the BOE page of the unit as it read then")


class HitOut(Out):
    rank: int
    boe_id: str = Field(description="the law's BOE id")
    article_id: str = Field(description="the unit's id (BOE anchor): what get_article takes, e.g. a56, da1")
    citation: str = Field(description='how to cite it: "Art. 56 ET · <title> (BOE-A-2015-11430)"')
    short_name: str | None = Field(description="the law's usual abbreviation (ET, CE …), where it has one")
    law_title: str
    heading: str
    path: list[str] = Field(description="Título › Capítulo › Sección of the unit")
    url: str = Field(description="the unit on boe.es")
    text: str = Field(description="the unit's text, or for a long unit the passage that matched")
    complete: bool = Field(description="false: text is a passage of a longer unit; get_article reads it all")
    status: Literal["vigente", "derogado"]
    version_date: str | None = Field(description="the wording shown came into force on this day")
    version_until: str | None = Field(description="… and stopped being in force on this day; null: in force")
    modified_by: str | None = Field(description="BOE id of the norm that gave the wording shown")
    match: str = Field(description='how it was found: the search mode, or "cita" when the question cites it')
    score: float = Field(description="the mode's own score: cosine (dense, funnel), BM25 (lexical), fused 0-1")
    relevance: float = Field(description="0-1, the same scale in every mode: how well it answers")
    good_match: bool = Field(description="relevance >= 0.5")
    cosine: float | None = Field(description="the question's cosine with the passage (null: not embedded)")
    matched_terms: list[str] = Field(description="the question's words the unit holds")


class SearchOut(Out):
    query: str
    mode: str
    good_match: bool = Field(description="whether any hit is a good match; false: the index holds no good answer")
    hits: list[HitOut]


class ArticleOut(Out):
    boe_id: str
    article_id: str = Field(description="the unit's id (BOE anchor)")
    citation: str
    short_name: str | None
    law_title: str
    kind: str
    heading: str
    path: list[str]
    url: str
    status: Literal["vigente", "derogado"]
    version_date: str | None
    version_until: str | None
    version_norma: str | None
    text: str = Field(description="this page of the unit's text")
    offset: int = Field(description="where this page starts, in characters")
    total_chars: int = Field(description="the length of the whole text")
    next_offset: int | None = Field(description="pass as offset for the next page; null: this is the last")
    wordings: list[WordingOut] = Field(description="every wording the index holds, oldest first")


class LawOut(Out):
    boe_id: str
    short_name: str | None
    title: str
    rango: str | None
    status: str
    units: int
    url: str


class LawsOut(Out):
    laws: list[LawOut]


class SideOut(Out):
    date: str = Field(description="the day asked for")
    version_date: str | None
    version_until: str | None
    version_norma: str | None
    url: str


class DiffOut(Out):
    boe_id: str
    article_id: str
    heading: str
    changed: bool
    older: SideOut
    newer: SideOut
    diff: str = Field(description="the text with [-removed-] and {+added+} words")


class ChangeOut(Out):
    article_id: str
    heading: str
    version_date: str | None
    version_until: str | None
    version_norma: str | None
    norma_url: str | None
    url: str
    in_force: bool


class LawChangesOut(Out):
    boe_id: str
    title: str
    short_name: str | None
    url: str
    changes: list[ChangeOut]


class ChangesOut(Out):
    laws: list[LawChangesOut]


# --- errors -----------------------------------------------------------------------------------------------------
def one_line(message: str, values: tuple = ()) -> str:
    """An error line for an agent (`echoes.redacted`): the first line, escape sequences out, each of the call's
    `values` it quotes cut to a short harmless prefix, no file paths, at most 300 characters."""
    return redacted(clean(str(message)), values)


def invalid_arguments(exc: ValidationError, tool: str) -> str:
    """One line for arguments that fail the tool's schema: the field and what to change, never the value."""
    errors = sorted(exc.errors(), key=lambda e: e["type"] != "extra_forbidden")  # a misspelt name explains the rest
    first = errors[0] if errors else {"loc": (), "msg": "invalid arguments", "type": ""}
    where = ".".join(shown(part) for part in first["loc"]) or "arguments"
    if first["type"] == "extra_forbidden":
        message = f"{tool}: unknown argument {where!r}; see the tool's input schema for the arguments it takes"
    elif first["type"] == "missing":
        message = f"{tool}: missing argument {where!r}"
    elif first["type"] == "string_pattern_mismatch":
        message = f"{tool}: {where} must be a date written YYYY-MM-DD"
    else:
        message = f"{tool}: {where}: {str(first['msg']).splitlines()[0]}"
    if len(errors) > 1:
        message += f" (and {len(errors) - 1} more)"
    return bounded(message)


# --- text parts ---------------------------------------------------------------------------------------------
def _passage(hit: Hit) -> tuple[str, bool]:
    """The unit's whole text when short, else the passage that matched (its header line left out)."""
    if len(hit.text) <= PASSAGE_CHARS:
        return hit.text, True
    return hit.matched_text.split("\n", 1)[-1], False


def _hit_out(hit: Hit) -> HitOut:
    text, complete = _passage(hit)
    data = {name: getattr(hit, name) for name in HitOut.model_fields if hasattr(hit, name)}
    return HitOut(**{**data, "citation": hit.citation, "text": text, "complete": complete})


def _hit_text(hit: HitOut) -> str:
    relevance = f"relevance {hit.relevance:.2f}" + ("" if hit.good_match else " (weak)")
    lines = [
        f"[{hit.rank}] {hit.citation} · {relevance}",
        f'article_id: {hit.article_id} (get_article boe_id="{hit.boe_id}" article_id="{hit.article_id}")',
        f"URL: {hit.url}",
    ]
    if hit.path:
        lines.append("Ubicación: " + " › ".join(hit.path))
    lines.append(hit.heading)
    lines.append(hit.text if hit.complete else f"…{hit.text}… [passage; get_article for the whole unit]")
    return "\n".join(lines)


def _search_text(result: SearchOut) -> str:
    if not result.hits:
        return "Sin resultados / no results: no unit matches the filters, or holds any word of the question."
    blocks = [_hit_text(hit) for hit in result.hits]
    if not result.good_match:
        blocks.insert(0, "No good match: none of these units answers the question well (relevance < 0.5).")
    return "\n\n".join(blocks)


def _page(text: str, offset: int, limit: int) -> tuple[str, int | None]:
    """text[offset:…] of at most `limit` characters, ended at a paragraph or word break where one is near; the
    next page's offset (None at the end)."""
    end = offset + limit
    if end >= len(text):
        return text[offset:], None
    cut = max(text.rfind("\n", offset, end), text.rfind(" ", offset, end))
    if cut <= offset + limit // 2:
        cut = end
    else:
        cut += 1
    return text[offset:cut], cut


def _article_out(unit: dict, offset: int, limit: int) -> ArticleOut:
    page, next_offset = _page(unit["text"], offset, limit)
    wordings = [WordingOut(**{k: w[k] for k in WordingOut.model_fields}) for w in unit["wordings"]]
    fields = {k: unit.get(k) for k in ArticleOut.model_fields if k in unit}
    return ArticleOut(
        **{**fields, "text": page, "offset": offset, "total_chars": len(unit["text"]),
           "next_offset": next_offset, "wordings": wordings}
    )  # fmt: skip


def _article_text(unit: ArticleOut) -> str:
    lines = [
        unit.citation,
        unit.heading,
        f"article_id: {unit.article_id}",
        f"URL: {unit.url}",
        f"Estado: {unit.status}",
    ]
    if unit.path:
        lines.append("Ubicación: " + " › ".join(unit.path))
    if unit.version_date:
        until = f" hasta el {unit.version_until}" if unit.version_until else ""
        lines.append(f"Redacción vigente desde el {unit.version_date}{until}")
    if unit.offset or unit.next_offset is not None:
        end = unit.offset + len(unit.text)
        lines.append(f"Characters {unit.offset}-{end} of {unit.total_chars}")
    lines += ["", unit.text]
    if unit.next_offset is not None:
        lines += ["", f"[continues: call get_article with offset={unit.next_offset}]"]
    if len(unit.wordings) > 1:
        lines += ["", "Redacciones / wordings:"]
        for w in unit.wordings:
            lines.append(f"- desde {w.version_date} hasta {w.version_until or 'hoy'}: {w.url}")
    return "\n".join(lines)


def _diff_out(result: dict) -> DiffOut:
    sides = {
        name: SideOut(**{k: result[side][k] for k in SideOut.model_fields})
        for name, side in (("older", "from"), ("newer", "to"))
    }
    return DiffOut(
        boe_id=result["boe_id"], article_id=result["article_id"], heading=result["heading"],
        changed=result["changed"], diff=plain_diff(result["spans"]) if result["changed"] else "", **sides,
    )  # fmt: skip


def _diff_text(result: DiffOut) -> str:
    lines = [f"{result.heading} ({result.boe_id}), [-suprimido-] {{+añadido+}}"]
    for w in (result.older, result.newer):
        lines.append(f"{w.date}: redacción vigente desde el {w.version_date} ({w.version_norma}) {w.url}")
    if not result.changed:
        return "\n".join([*lines, "Sin cambios entre las dos fechas."])
    return "\n".join([*lines, "", result.diff])


def _changes_text(feed: ChangesOut, since: str) -> str:
    lines = []
    for law in feed.laws:
        lines.append(f"{law.boe_id} {law.title}")
        lines += [f"- {c.version_date}: {c.heading}, modificado por {c.version_norma} ({c.norma_url}) {c.url}"
                  for c in law.changes]  # fmt: skip
    return "\n".join(lines) or f"Sin cambios desde el {since}."


def _laws_text(laws: LawsOut) -> str:
    lines = [
        f"{law.boe_id}{f' ({law.short_name})' if law.short_name else ''} · {law.title} · {law.rango or '?'} · "
        f"{law.status} · {law.units} unidades · {law.url}"
        for law in laws.laws
    ]
    return "\n".join(lines) or "Ninguna ley / no laws match."


# --- the server ---------------------------------------------------------------------------------------------
def _result(structured: BaseModel, text: str):
    """A tool result: the readable text and the structured content (control characters out of both)."""
    data = _cleaned(structured.model_dump(mode="json"))
    return CallToolResult(content=[TextContent(type="text", text=clean(text))], structured_content=data)


def _cleaned(value: Any) -> Any:
    if isinstance(value, str):
        return clean(value)
    if isinstance(value, list):
        return [_cleaned(v) for v in value]
    if isinstance(value, dict):
        return {k: _cleaned(v) for k, v in value.items()}
    return value


class StrictTool(Tool):
    """The SDK's Tool, whose every error is one bounded line: arguments that fail the schema say which field and
    what to change (never the value); a tool's own error comes without the SDK's "Error executing tool" prefix."""

    async def run(self, arguments: dict[str, Any], context, convert_result: bool = False) -> Any:
        try:
            return await super().run(arguments, context, convert_result)
        except UnexpectedToolError:  # a crash: the SDK logs it and answers a generic line
            raise
        except ToolError as exc:
            cause = exc.__cause__
            if isinstance(cause, ValidationError):
                raise ToolError(invalid_arguments(cause, self.name)) from cause
            raise ToolError(one_line(str(cause) if isinstance(cause, ToolError) else str(exc), (arguments,))) from cause


def _refuse_unknown_arguments(tool) -> None:
    """Make a tool's argument model refuse keys it does not declare (a misspelt `law` is an error, as in HTTP)."""
    loose = tool.fn_metadata.arg_model
    config = ConfigDict(**{**loose.model_config, "extra": "forbid"})
    tool.fn_metadata.arg_model = type(loose.__name__, (loose,), {"model_config": config, "__module__": __name__})
    tool.parameters = {**tool.parameters, "additionalProperties": False}


def create_server(search: LegalSearch):
    """The MCP server over an open index."""

    def answer(call):
        try:
            return call()
        except LegalSearchError as exc:  # StrictTool.run bounds the line and cuts the arguments it quotes
            raise ToolError(str(exc)) from None

    def laws_of(names: list[str] | None) -> tuple[str, ...]:
        return tuple(search.unit(name, "")[0] for name in names or ())

    def search_law(
        query: Annotated[str, Field(description="La pregunta / the question, in Spanish", max_length=4000)],
        k: Annotated[int, Field(ge=1, le=50, description="How many articles")] = 5,
        mode: Literal[SEARCH_MODES] | None = None,
        laws: BoeIds = None,
        rangos: Names = None,
        kinds: Names = None,
        vigentes: bool = False,
        as_of: Day = None,
        materias: Names = None,
    ) -> Annotated[CallToolResult, SearchOut]:
        def run() -> list[Hit]:
            filters = Filters.build(laws_of(laws), rangos, kinds, vigentes, as_of, materias)
            return search.search(query, k=k, mode=mode, filters=filters)

        hits = [_hit_out(hit) for hit in answer(run)]
        result = SearchOut(
            query=query, mode=mode or search.default_mode, good_match=any(h.good_match for h in hits), hits=hits
        )
        return _result(result, _search_text(result))

    def get_article(
        boe_id: Annotated[str, Field(description="BOE id (BOE-A-1978-31229) or short name (CE, ET …)", max_length=40)],
        article_id: UnitArg,
        as_of: Day = None,
        offset: Annotated[int, Field(ge=0, description="first character of the page (next_offset of the last)")] = 0,
        limit: Annotated[int, Field(ge=500, le=50_000, description="characters per page")] = PAGE_CHARS,
    ) -> Annotated[CallToolResult, ArticleOut]:
        unit = answer(lambda: search.article(boe_id, article_id, as_of))
        if unit is None:
            when = f" in force on {as_of}" if as_of else ""
            raise ToolError(
                f"no unit {shown(article_id)!r}{when} in law {shown(boe_id)!r} of this index; list_laws gives the "
                "laws, search gives each hit's boe_id and article_id"
            )
        if offset >= max(len(unit["text"]), 1):
            raise ToolError(f"offset: the unit has {len(unit['text'])} characters; give a smaller offset")
        result = _article_out(unit, offset, limit)
        return _result(result, _article_text(result))

    def list_laws(
        rango: Annotated[str | None, Field(max_length=100)] = None, vigentes: bool = False
    ) -> Annotated[CallToolResult, LawsOut]:
        rows = answer(search.laws)
        laws = [
            LawOut(boe_id=law["boe_id"], short_name=short_name(law["boe_id"]),
                   title=law["title"], rango=law["rango"], status=law["status"], units=law["articles"],
                   url=law_url(law["boe_id"]))
            for law in rows
            if not (rango and (law["rango"] or "").lower() != rango.lower())
            and not (vigentes and law["status"] == "derogada")
        ]  # fmt: skip
        result = LawsOut(laws=laws)
        return _result(result, _laws_text(result))

    def diff_wordings(
        boe_id: Annotated[str, Field(max_length=40, description="BOE id or short name")],
        article_id: Annotated[str, Field(max_length=60, description='the unit: "135", "a135" …')],
        date_from: Annotated[str, Field(description="YYYY-MM-DD", pattern=DATE)],
        date_to: Annotated[str, Field(description="YYYY-MM-DD", pattern=DATE)],
    ) -> Annotated[CallToolResult, DiffOut]:
        result = _diff_out(answer(lambda: search.diff(boe_id, article_id, date_from, date_to)))
        return _result(result, _diff_text(result))

    def changes(
        since: Annotated[str, Field(description="YYYY-MM-DD", pattern=DATE)],
        until: Day = None,
        laws: BoeIds = None,
    ) -> Annotated[CallToolResult, ChangesOut]:
        feed = answer(lambda: search.changes(since, until, laws_of(laws)))
        result = ChangesOut(laws=[LawChangesOut(**law) for law in feed])
        return _result(result, _changes_text(result, since))

    descriptions = {
        "search": "Busca los artículos de la legislación española que mejor responden a una pregunta, con cita y "
        "enlace al BOE. Search Spanish law: the articles that best answer a question (in Spanish), cited, each "
        "with the boe_id and article_id get_article takes, and a relevance (0-1; good_match from 0.5: none "
        "means no good answer). Filters: laws (BOE ids or short names), rangos (Ley, Real Decreto …), kinds "
        "(articulos, disposiciones), vigentes (leave out repealed units), as_of (the law as it read that day), "
        "materias (BOE subject headings).",
        "get_article": "Devuelve el texto completo de un artículo o disposición, su ubicación, su estado y todas "
        "sus redacciones con fechas y enlaces. Get one unit of a law: text, path, status, wordings. boe_id takes a "
        'BOE id or a short name ("ET"); article_id what a lawyer writes ("56", "art. 56 bis", "a56", "da1"); '
        "as_of gives the wording in force that day. Long units come in pages: follow next_offset.",
        "list_laws": "Lista las leyes del índice (id BOE, nombre corto, título, rango, estado, número de "
        "unidades). List the laws the index holds; filter by rango or leave out repealed laws.",
        "diff_wordings": "Compara palabra a palabra las redacciones de un artículo vigentes en dos fechas. "
        "Word-level diff of a unit's wordings in force on two dates: [-removed-] {+added+}, with the modifying "
        "norm of each.",
        "changes": "Artículos cuya redacción cambió desde una fecha, por ley, con la norma modificadora y "
        "enlaces. Units whose wording changed since a date, grouped by law, with the modifying norm and links.",
    }
    functions = {"search": search_law, "get_article": get_article, "list_laws": list_laws,
                 "diff_wordings": diff_wordings, "changes": changes}  # fmt: skip
    tools = []
    for name, function in functions.items():
        tool = StrictTool.from_function(function, name=name, description=descriptions[name])
        _refuse_unknown_arguments(tool)
        tools.append(tool)
    return MCPServer(name="legalsearch", instructions=INSTRUCTIONS, version=__version__, log_level="ERROR", tools=tools)
