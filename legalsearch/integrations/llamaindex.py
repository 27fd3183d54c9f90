"""A LlamaIndex retriever over a legalsearch index (`pip install legalsearch[llamaindex]`).

>>> from legalsearch.integrations.llamaindex import LegalSearchLlamaRetriever
>>> retriever = LegalSearchLlamaRetriever.from_index("indexes/default", k=5)
>>> retriever.retrieve("art. 38 del Estatuto de los Trabajadores")[0].node.metadata["citation"].startswith("Art. 38 ET")
True
"""

from __future__ import annotations

from typing import Any

try:
    from llama_index.core.retrievers import BaseRetriever
    from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode
except ImportError as exc:  # pragma: no cover - depends on the extra
    raise ImportError("the LlamaIndex retriever needs llama-index-core: pip install 'legalsearch[llamaindex]'") from exc

from ..search import Filters, LegalSearch
from . import citation_metadata


class LegalSearchLlamaRetriever(BaseRetriever):
    """Articles as `TextNode`s (id `<boe_id>#<article_id>`) with their citation fields as metadata."""

    def __init__(
        self,
        search: LegalSearch,
        k: int = 5,
        dim: int | None = None,
        mode: str | None = None,
        filters: Filters | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.search, self.k, self.dim, self.mode, self.filters = search, k, dim, mode, filters

    @classmethod
    def from_index(cls, path: str, **kwargs: Any) -> LegalSearchLlamaRetriever:
        return cls(LegalSearch.open(path), **kwargs)

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        hits = self.search.search(query_bundle.query_str, k=self.k, dim=self.dim, mode=self.mode, filters=self.filters)
        return [
            NodeWithScore(
                node=TextNode(id_=f"{hit.boe_id}#{hit.article_id}", text=hit.text, metadata=citation_metadata(hit)),
                score=hit.score,
            )
            for hit in hits
        ]
