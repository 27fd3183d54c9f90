"""RAG context: the sources a prompt cites, numbered, best first, within a token budget. A part of
`LegalSearch` (mixed in)."""

from __future__ import annotations

import re

from .errors import QueryError
from .pinning import index_errors


class RagContext:
    """`LegalSearch.context`."""

    @index_errors
    def context(self, query: str, k: int = 5, max_tokens: int = 2000, **options) -> str:
        """Numbered sources for a prompt, best first, within `max_tokens` (the model's tokenizer):

            [1] Art. 14 · Constitución Española (BOE-A-1978-31229) https://www.boe.es/buscar/act.php?id=…#a14
            Los españoles son iguales ante la ley, …

        A source that does not fit whole is cut at a sentence end; sources that do not fit at all are left out.
        `options` are those of `search` (dim, mode, filters …)."""
        if max_tokens <= 0:
            raise QueryError(f"max_tokens must be positive (got {max_tokens})")
        blocks: list[str] = []
        used = 0
        for n, hit in enumerate(self.search(query, k=k, **options), 1):
            header = f"[{n}] {hit.citation} {hit.url}"
            block = f"{header}\n{hit.text}"
            [size] = self.encoder.count_tokens([block])
            if used + size > max_tokens:
                room = max_tokens - used - self.encoder.count_tokens([header])[0]
                sentences = re.split(r"(?<=[.;:])\s+", hit.text)
                kept: list[str] = []
                for sentence in sentences:
                    if self.encoder.count_tokens([" ".join([*kept, sentence])])[0] > room:
                        break
                    kept.append(sentence)
                if kept:
                    blocks.append(f"{header}\n{' '.join(kept)} […]")
                break
            blocks.append(block)
            used += size
        return "\n\n".join(blocks)
