"""Retrievers for RAG frameworks, each an optional extra: `legalsearch[langchain]`, `legalsearch[llamaindex]`."""

from __future__ import annotations

from ..search import Hit


def citation_metadata(hit: Hit) -> dict:
    """The metadata every framework's document carries: what a RAG answer needs to cite the article."""
    data = {
        "citation": hit.citation,
        "boe_id": hit.boe_id,
        "law_title": hit.law_title,
        "article_id": hit.article_id,
        "kind": hit.kind,
        "number": hit.number,
        "heading": hit.heading,
        "path": " › ".join(hit.path),
        "url": hit.url,
        "score": hit.score,
        "relevance": hit.relevance,  # 0-1 in every mode; good_match from 0.5 (README: Scores and relevance)
        "good_match": hit.good_match,
        "rank": hit.rank,
        "match": hit.match,
        "status": hit.status,
    }
    names = ("version_date", "version_until", "short_name")
    data.update({name: getattr(hit, name) for name in names if getattr(hit, name)})
    return data
