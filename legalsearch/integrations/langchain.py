"""A LangChain retriever over a legalsearch index (`pip install legalsearch[langchain]`).

>>> from legalsearch.integrations.langchain import LegalSearchRetriever
>>> retriever = LegalSearchRetriever.from_index("indexes/default", k=5)
>>> retriever.invoke("art. 38 del Estatuto de los Trabajadores")[0].metadata["citation"].startswith("Art. 38 ET")
True
"""

from __future__ import annotations

from typing import Any

try:
    from langchain_core.callbacks import CallbackManagerForRetrieverRun
    from langchain_core.documents import Document
    from langchain_core.retrievers import BaseRetriever
except ImportError as exc:  # pragma: no cover - depends on the extra
    raise ImportError("the LangChain retriever needs langchain-core: pip install 'legalsearch[langchain]'") from exc
from pydantic import ConfigDict

from ..search import Filters, LegalSearch
from . import citation_metadata


class LegalSearchRetriever(BaseRetriever):
    """Articles as `Document`s: the article's text as content, its citation fields as metadata."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    search: LegalSearch
    k: int = 5
    dim: int | None = None
    mode: str | None = None
    filters: Filters | None = None

    @classmethod
    def from_index(cls, path: str, **kwargs: Any) -> LegalSearchRetriever:
        return cls(search=LegalSearch.open(path), **kwargs)

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun) -> list[Document]:
        hits = self.search.search(query, k=self.k, dim=self.dim, mode=self.mode, filters=self.filters)
        return [Document(page_content=hit.text, metadata=citation_metadata(hit)) for hit in hits]
