"""The shapes of the HTTP API's answers (`legalsearch serve`), for the OpenAPI schema at /docs and /openapi.json:
every 200 response typed, every field described.

The models accept fields they do not declare (a newer library may add one), so an answer is never refused for
carrying more; `tests/test_http_api.py` checks that every field an answer carries is declared here."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


def _closed_schema(schema: dict, model: type) -> None:
    schema.pop("additionalProperties", None)  # documented as closed: Swagger would invent "additionalProp1"


class Answer(BaseModel):
    model_config = ConfigDict(extra="allow", json_schema_extra=_closed_schema)


Day = str | None


class Hit(Answer):
    rank: int = Field(description="Position in the result list, from 1.")
    score: float = Field(description="Ranking score of the mode used; higher is better.")
    boe_id: str = Field(description="The law's BOE id.", examples=["BOE-A-1978-31229"])
    law_title: str = Field(description="The law's official title.")
    article_id: str = Field(description="The unit's id in the law (the BOE anchor): a14, da1, dt2 …")
    kind: str = Field(description="articulo, disposicion_adicional, disposicion_final, preambulo …")
    number: str | None = Field(description='The article number as written ("14", "4 a 6"), or null.')
    heading: str = Field(description="The unit's heading.")
    path: list[str] = Field(description="The headings above the unit (Título, Capítulo, Sección), outermost first.")
    url: str = Field(description="The unit on boe.es.")
    text: str = Field(description="The unit's whole text, in the wording shown.")
    matched_text: str = Field(description="The passage that matched best, with its law and headings on line 1.")
    chunk_part: int = Field(description="Which passage of a long unit matched (0: the first).")
    match: str = Field(description='How it was found: the search mode, or "cita" when the query cites the unit.')
    version_date: Day = Field(description="The wording shown came into force this day (YYYY-MM-DD), if known.")
    version_until: Day = Field(description="… and stopped being in force this day; null while in force.")
    status: str = Field(description='"vigente" or "derogado" (the unit or its law repealed or expired).')
    short_name: str | None = Field(description='The law\'s usual abbreviation ("CE", "ET"), if it has one.')
    modified_by: str | None = Field(description="BOE id of the norm that gave the wording shown, if not the law.")
    consolidated: bool = Field(description="False: the text as published in the daily BOE, not yet consolidated.")
    relevance: float = Field(
        default=0.0, description="How well it answers, 0 to 1, on the same scale in every mode (unlike score)."
    )
    good_match: bool = Field(
        default=False, description="relevance ≥ 0.5; when no hit is a good match, the index has no good answer."
    )
    cosine: float | None = Field(
        default=None, description="The question's cosine with the passage that matched (null: not embedded)."
    )
    matched_terms: list[str] = Field(default_factory=list, description="The question's words the unit's text holds.")
    citation: str = Field(description="Ready to quote: unit, short name, title and BOE id.")


class SearchResponse(Answer):
    query: str = Field(description="The question, as sent.")
    hits: list[Hit] = Field(description="The best units first, at most k.")


class BatchResponse(Answer):
    results: list[SearchResponse] = Field(description="One result list per question, in the order sent.")


class Reference(Answer):
    id_norma: str = Field(description="BOE id of the other norm.")
    relacion: str = Field(description='How they relate ("MODIFICA", "DEROGA", "DE CONFORMIDAD con" …).')
    texto: str = Field(description="What the BOE says about the relation.")


class Referencias(Answer):
    anteriores: list[Reference] | None = Field(
        default=None, exclude_if=lambda v: v is None, description="Earlier norms this one modifies, repeals …"
    )
    posteriores: list[Reference] | None = Field(
        default=None, exclude_if=lambda v: v is None, description="Later norms that modify, repeal … this one."
    )


class LawFacts(Answer):
    boe_id: str = Field(description="The law's BOE id.", examples=["BOE-A-1978-31229"])
    title: str = Field(description="The official title (the BOE id where the source had none).")
    rango: str | None = Field(description="Ley, Ley Orgánica, Real Decreto …, if known.")
    departamento: str | None = Field(description="The issuing department, if known.")
    fecha_disposicion: Day = Field(description="Date of the law (YYYY-MM-DD), if known.")
    fecha_publicacion: Day = Field(description="Published in the BOE this day, if known.")
    fecha_vigencia: Day = Field(description="In force from this day, if known.")
    fecha_actualizacion: Day = Field(description="The consolidated text's last update, if known.")
    eli_url: str | None = Field(description="European Legislation Identifier URL, if known.")
    status: str | None = Field(description='"vigente", "derogado" …, if known.')
    materias: list[str] = Field(description="The BOE's subject headings (análisis).")
    referencias: Referencias = Field(description="The norms this one relates to (BOE análisis).")
    source_format: str | None = Field(description="What it was indexed from: boe-api-xml, boe-xml, html, pdf, text.")
    source_sha256: str | None = Field(description="sha256 of the source indexed.")


class LawSummary(LawFacts):
    articles: int = Field(description="How many units the index holds of it (wordings in force).")


class Unit(Answer):
    article_id: str = Field(description="The unit's id, for GET /laws/{boe_id}/articles/{article_id}.")
    kind: str = Field(description="articulo, disposicion_adicional, preambulo …")
    number: str | None = Field(description="The article number as written, or null.")
    heading: str = Field(description="The unit's heading.")
    path: list[str] = Field(description="The headings above the unit, outermost first.")
    url: str = Field(description="The unit on boe.es.")


class Law(LawFacts):
    units: list[Unit] = Field(description="Every unit of the law, in the law's order.")


class WordingLink(Answer):
    version_date: Day = Field(description="In force from this day, if known.")
    version_until: Day = Field(description="In force until this day; null while in force.")
    version_norma: str | None = Field(description="BOE id of the norm that gave this wording.")
    norma_url: str | None = Field(description="That norm on boe.es.")
    url: str = Field(description="This wording on boe.es.")


class Article(Answer):
    boe_id: str = Field(description="The law's BOE id.")
    article_id: str = Field(description="The unit's id in the law.")
    kind: str = Field(description="articulo, disposicion_adicional, preambulo …")
    number: str | None = Field(description="The article number as written, or null.")
    heading: str = Field(description="The unit's heading.")
    path: list[str] = Field(description="The headings above the unit, outermost first.")
    text: str = Field(description="The unit's text in the wording asked for.")
    url: str = Field(description="This wording on boe.es.")
    anchor: str = Field(description="The unit's anchor in the BOE page.")
    notes: list[str] = Field(description="The BOE's notes on the unit (which norm changed it, and when).")
    version_date: Day = Field(description="The wording came into force this day, if known.")
    version_published: Day = Field(description="The norm giving this wording was published this day, if known.")
    version_norma: str | None = Field(description="BOE id of the norm that gave this wording.")
    version_until: Day = Field(description="In force until this day; null while in force.")
    status: str = Field(description='"vigente" or "derogado".')
    content_hash: str = Field(description="sha256 of the text, to tell wordings apart.")
    law_title: str = Field(description="The law's official title.")
    source_format: str | None = Field(description="What the law was indexed from.")
    wordings: list[WordingLink] = Field(description="Every wording the index holds of this unit, oldest first.")
    short_name: str | None = Field(description="The law's usual abbreviation, if it has one.")
    citation: str = Field(description="Ready to quote: unit, short name, title and BOE id (and the wording's dates).")


class DiffSide(Answer):
    date: str = Field(description="The date asked for.")
    version_date: Day = Field(description="The wording in force that day came into force on this day.")
    version_until: Day = Field(description="… and was in force until this day; null while in force.")
    version_norma: str | None = Field(description="BOE id of the norm that gave this wording.")
    norma_url: str | None = Field(description="That norm on boe.es.")
    url: str = Field(description="This wording on boe.es.")
    text: str = Field(description="The unit's text in this wording.")
    heading: str = Field(description="The unit's heading in this wording.")


class Span(Answer):
    op: str = Field(description="equal, delete, insert or replace.")
    old: str = Field(description="The text in the earlier wording (joined, the whole earlier text).")
    new: str = Field(description="The text in the later wording (joined, the whole later text).")


class Diff(Answer):
    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)

    boe_id: str = Field(description="The law's BOE id.")
    article_id: str = Field(description="The unit's id in the law.")
    heading: str = Field(description="The unit's heading in the later wording.")
    law_title: str = Field(description="The law's official title.")
    short_name: str | None = Field(description="The law's usual abbreviation, if it has one.")
    from_: DiffSide = Field(alias="from", description="The wording in force on the earlier date.")
    to: DiffSide = Field(description="The wording in force on the later date.")
    changed: bool = Field(description="Whether the two wordings differ.")
    spans: list[Span] = Field(description="Word-level runs turning the earlier text into the later one.")


class Change(Answer):
    article_id: str = Field(description="The unit's id in the law.")
    heading: str = Field(description="The unit's heading.")
    version_date: Day = Field(description="The new wording came into force this day.")
    version_until: Day = Field(description="… and was in force until this day; null while in force.")
    version_norma: str | None = Field(description="BOE id of the norm that gave the new wording.")
    norma_url: str | None = Field(description="That norm on boe.es.")
    url: str = Field(description="The new wording on boe.es.")
    in_force: bool = Field(description="Whether that wording is still the one in force.")


class LawChanges(Answer):
    boe_id: str = Field(description="The law's BOE id.")
    title: str = Field(description="The law's official title.")
    short_name: str | None = Field(description="The law's usual abbreviation, if it has one.")
    url: str = Field(description="The law on boe.es.")
    changes: list[Change] = Field(description="Its units with a new wording in the period, newest first.")


class SyncRun(Answer):
    at: str = Field(description="When the run ended (UTC, ISO 8601).")
    listing: str | None = Field(description='"full", or "window since YYYYMMDD".')
    new: list[str] | None = Field(description="BOE ids of norms indexed for the first time.")
    changed: list[str] | None = Field(description="BOE ids of norms whose consolidated text changed.")
    derogated: list[str] | None = Field(description="Among new and changed: repealed or expired.")
    removed: list[str] | None = Field(description="Dropped from the index: gone, 404, no longer selected.")
    gone: list[str] | None = Field(description="No longer in the BOE catalogue.")
    missing: list[str] | None = Field(description="The catalogue lists them but their text answers 404.")
    failed: dict[str, str] | None = Field(description="BOE id → why it could not be fetched or indexed.")
    diario: list[str] | None = Field(description="Indexed as published in the daily BOE, not yet consolidated.")
    commit: int | None = Field(description="The index commit the run made, if it made one.")


class Counts(Answer):
    laws: int = Field(description="Laws.")
    articles: int = Field(description="Units (articles, disposiciones …) in their wording in force.")
    chunks: int = Field(description="Passages embedded.")
    earlier_wordings: int | None = Field(
        default=None, exclude_if=lambda v: v is None, description="Earlier wordings of units (index --history)."
    )


class Health(Answer):
    status: str = Field(description='"ok".')
    commit: int = Field(description="The index commit being served (it follows new ones).")
    updated: str | None = Field(description="When that commit was made (UTC).")
    version: str = Field(description="legalsearch's version.")
    index: str = Field(description="The index folder's name (never its path).")
    model: str = Field(description="The embedding model: its Hugging Face id, or a local folder's name.")
    model_source: str = Field(description='"hub" (a Hugging Face id) or "local folder".')
    runtime: str = Field(description='How queries are embedded: backend and precision ("openvino bf16").')
    dims: list[int] = Field(description="The vector sizes built.")
    default_mode: str = Field(description="The search mode used when a request names none.")
    counts: Counts = Field(description="What the index holds.")
