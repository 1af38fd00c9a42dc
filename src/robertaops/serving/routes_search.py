"""Search routes on named indexes (ROBERTAOPS_INDEXES="name=DIR,..."; the first is the default).

- POST /search (role infer): dense, lexical or hybrid search, metadata filters, optional rerank by a served
  cross-encoder.
- POST /documents (role admin): add documents; an id already indexed is replaced. DELETE /documents?ids=..
  (role admin): remove documents. Both are atomic index writes (search/writer.py) run in a thread; later searches
  see them because an index is re-opened whenever its CURRENT generation moved.

The query is embedded by the served model whose weights and tokenizer match the index manifest; if no served model
matches, the index is refused with stale_index (409) rather than compared with vectors from another model.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response
from pydantic import BaseModel, Field

from ..errors import IndexNotFoundError, InvalidInputError, StaleIndexError, choices
from .deps import Call, get_call, json_response, require

router = APIRouter(tags=["Search"])
CallDep = Depends(get_call)


class SearchRequest(BaseModel):
    query: str = Field(..., examples=["what is the capital of France?"])
    index: str | None = Field(None, description="a served index name; the default when absent")
    mode: Literal["dense", "lexical", "hybrid"] = "dense"
    k: int = Field(10, ge=1, le=1000)
    filter: dict[str, Any] | None = Field(None, description='metadata equality, e.g. {"lang": "en", "year": [1, 2]}')
    fusion: Literal["rrf", "weighted"] = "rrf"
    alpha: float = Field(0.5, ge=0, le=1)
    rrf_k: int = Field(60, ge=1)
    rerank: str | None = Field(None, description="a served cross-encoder model that reranks the top hits")
    rerank_top: int = Field(20, ge=1, le=1000)


class DocumentIn(BaseModel):
    id: str
    text: str
    title: str = ""
    metadata: dict[str, Any] = Field(default_factory=dict)


class DocumentsRequest(BaseModel):
    index: str | None = None
    documents: list[DocumentIn] = Field(..., min_length=1)


class Indexes:
    """The server's indexes: opened on first use, re-opened when a write published a new generation."""

    def __init__(self, specs: list[str]):
        self.paths: dict[str, Path] = {}
        for spec in specs:
            name, sep, target = spec.partition("=")
            name, target = (name, target) if sep else (Path(spec.rstrip("/")).name, spec)
            self.paths[name.strip()] = Path(target.strip())
        self.open: dict[str, Any] = {}
        self.locks = {name: asyncio.Lock() for name in self.paths}

    @staticmethod
    def of(call: Call) -> Indexes:
        state = call.request.app.state
        if getattr(state, "search_indexes", None) is None:
            state.search_indexes = Indexes(call.settings.indexes)
        return state.search_indexes

    def name(self, name: str | None) -> str:
        if not self.paths:
            raise IndexNotFoundError("this server serves no search index (set ROBERTAOPS_INDEXES=name=DIR)")
        name = name or next(iter(self.paths))
        if name not in self.paths:
            raise IndexNotFoundError(f"unknown index {name!r}; served: {choices(list(self.paths))}")
        return name

    def get(self, name: str | None):
        from ..search.index import Index

        name = self.name(name)
        ix = self.open.get(name)
        if ix is None or ix.stale():
            self.open[name] = ix = Index.open(self.paths[name])
        return ix

    def model_for(self, ix, call: Call):
        """The served model that built this index's vectors (same weights, tokenizer, pooling, dimension)."""
        from ..search.manifest import check

        for served in call.backend.names:
            try:
                check(ix.manifest, call.backend.model(served), ix.path)
                return call.backend.model(served)
            except StaleIndexError:
                continue
        built = ix.manifest["model"]
        raise StaleIndexError(f"index {ix.path.name!r} was built with {built['name']!r} (weights sha256 "
                              f"{str(built['weights_sha256'])[:12]}), which none of the served models "
                              f"({', '.join(call.backend.names)}) matches: serve that model or rebuild the index")


def _searched(indexes: Indexes, call: Call, body: SearchRequest) -> dict:
    ix = indexes.get(body.index)
    model = indexes.model_for(ix, call) if body.mode != "lexical" else None
    rerank = call.backend.model(body.rerank) if body.rerank else None
    hits = ix.search(body.query, mode=body.mode, k=body.k, model=model, where=body.filter, fusion=body.fusion,
                     alpha=body.alpha, rrf_k=body.rrf_k, rerank=rerank, rerank_top=body.rerank_top)
    return {"index": indexes.name(body.index), "mode": body.mode, "hits": hits}


@router.post("/search", dependencies=[require("infer")], summary="Search a served index (dense, lexical, hybrid)")
async def search(body: SearchRequest, call: Call = CallDep) -> Response:
    call.model(None)  # 503 until the models are ready
    call.count([body.query], "query")
    return json_response(await call.run(asyncio.to_thread(_searched, Indexes.of(call), call, body)))


@router.post("/documents", dependencies=[require("admin")], summary="Add or replace documents in an index")
async def add_documents(body: DocumentsRequest, call: Call = CallDep) -> Response:
    from ..search import writer
    from ..search.sources import Doc

    call.model(None)
    indexes = Indexes.of(call)
    name = indexes.name(body.index)
    call.count([d.text for d in body.documents], "documents")  # the batch limit, and the access log's inputs
    docs = [Doc(d.id, d.text, d.title, d.metadata) for d in body.documents]
    async with indexes.locks[name]:
        model = indexes.model_for(indexes.get(name), call)
        result = await call.run(asyncio.to_thread(writer.add, indexes.paths[name], [docs], model, progress=False))
    return json_response({"index": name, **result})


@router.delete("/documents", dependencies=[require("admin")], summary="Delete documents from an index by id")
async def delete_documents(ids: Annotated[list[str], Query(description="document ids, repeated: ?ids=a&ids=b")],
                           index: Annotated[str | None, Query()] = None, call: Call = CallDep) -> Response:
    from ..search import writer

    indexes = Indexes.of(call)
    name = indexes.name(index)
    if not ids:
        raise InvalidInputError("ids must not be empty")
    async with indexes.locks[name]:
        result = await call.run(asyncio.to_thread(writer.delete, indexes.paths[name], ids))
    return json_response({"index": name, **result})
