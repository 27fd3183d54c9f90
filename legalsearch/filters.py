"""What a search may return: `Filters`, restrictions applied before the top-k cut, as predicates (laws, rangos,
unit kinds, status, an as-of day, materias) that each store turns into its own query."""

from __future__ import annotations

from dataclasses import dataclass

from .documents import ARTICLE_KINDS
from .errors import QueryError

KIND_GROUPS = {
    "articulos": ("articulo",),
    "disposiciones": (
        "disposicion_adicional", "disposicion_transitoria", "disposicion_derogatoria", "disposicion_final",
    ),
}  # fmt: skip


@dataclass(frozen=True)
class Filters:
    """Restrictions applied before the top-k cut. Empty tuples mean no restriction.

    `kinds` takes unit kinds (`articulo`, `disposicion_final` …) or the groups `articulos` / `disposiciones`;
    `vigentes` leaves out laws known to be repealed; `as_of` (ISO date) searches the wordings in force that day:
    where the index holds earlier wordings (`index --history`), each unit as it read then; units whose wording
    came into force later are left out. Without `as_of`, the wordings in force."""

    laws: tuple[str, ...] = ()
    rangos: tuple[str, ...] = ()
    kinds: tuple[str, ...] = ()
    vigentes: bool = False
    as_of: str | None = None
    materias: tuple[str, ...] = ()  # the BOE's subject headings (análisis), any of them

    @classmethod
    def build(cls, laws=None, rangos=None, kinds=None, vigentes: bool = False, as_of: str | None = None, materias=None):
        """Filters from what a request gives (the CLI's options, the HTTP body, MCP arguments, the page's form):
        each of `laws`, `rangos`, `kinds`, `materias` None, one value or several; empty values are dropped, and
        an empty `as_of` is none."""
        return cls(_values(laws), _values(rangos), _values(kinds), bool(vigentes), as_of or None, _values(materias))

    @property
    def active(self) -> bool:
        return bool(self.laws or self.rangos or self.kinds or self.vigentes or self.as_of or self.materias)

    def unit_kinds(self) -> tuple[str, ...]:
        kinds: list[str] = []
        for kind in self.kinds:
            if kind in KIND_GROUPS:
                kinds.extend(KIND_GROUPS[kind])
            elif kind in ARTICLE_KINDS:
                kinds.append(kind)
            else:
                valid = ", ".join([*KIND_GROUPS, *ARTICLE_KINDS])
                raise QueryError(f"unknown kind {kind!r}; choose among {valid}")
        return tuple(kinds)


def _values(given) -> tuple[str, ...]:
    if given is None:
        return ()
    if isinstance(given, str):
        given = [given]
    return tuple(value for value in given if value)
