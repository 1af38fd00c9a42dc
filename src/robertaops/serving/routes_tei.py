"""TEI-compatible routes (/embed, /embed_all, /predict, /rerank, /tokenize, /decode, /similarity, /info, POST /)
and ours (/ner, /fill-mask). Each validates, calls the backend, and sends JSON; errors are raised, never built here.

TEI's single-vs-batch rules are kept: /embed, /tokenize and /decode always answer with a list per input;
/predict, /ner and /fill-mask answer a single input with its result and a batch with a list of results.
"""

from __future__ import annotations

import asyncio
from importlib.metadata import version as dist_version
from typing import Any

from fastapi import APIRouter, Body, Depends, Query
from fastapi.responses import Response
from pydantic import BaseModel

from ..errors import InvalidInputError
from ..pipelines.runner import default_batch_tokens
from .deps import Call, get_call, json_response, require
from .direct import validated
from .schemas import (
    DecodeRequest,
    EmbedAllRequest,
    EmbedRequest,
    FillMaskRequest,
    Info,
    NERRequest,
    Prediction,
    PredictRequest,
    Rank,
    RerankRequest,
    SimilarityRequest,
    SimpleToken,
    TokenizeRequest,
)
from .vectors import check_dimensions, shorten

router = APIRouter(dependencies=[require("infer")], tags=["TEI"])
CallDep = Depends(get_call)
AnyBody = Body(..., examples=[{"inputs": "What is Deep Learning?"}])


@router.post("/embed", response_model=list[list[float]], summary="Embed texts (pooled, normalized by default)")
async def embed(body: EmbedRequest, call: Call = CallDep) -> Response:
    name = call.model(body.model)
    texts, _ = call.texts(body.inputs)
    dims = check_dimensions(body.dimensions, call.m.dimension)
    vectors = await call.run(call.backend.embed(name, texts, pooling=body.pooling, normalize=body.normalize,
                                                truncate=call.truncation(body)))
    return json_response(shorten(vectors, dims, body.normalize))


@router.post("/embed_all", response_model=list[list[list[float]]],
             summary="Every token's hidden state, specials included (no pooling); long inputs merged by position")
async def embed_all(body: EmbedAllRequest, call: Call = CallDep) -> Response:
    name = call.model(body.model)
    texts, _ = call.texts(body.inputs)
    states = await call.run(call.backend.embed_all(name, texts, truncate=call.truncation(body)))
    return json_response(states)


@router.post("/predict", response_model=list[Prediction] | list[list[Prediction]],
             summary="Classify a text, a pair [text, text], or a batch [[text], [text, text], ...]")
async def predict(body: PredictRequest, call: Call = CallDep) -> Response:
    name = call.model(body.model)
    items, single = predict_items(body.inputs)
    call.count(items)
    rows = await call.run(call.backend.classify(name, items, top_k=body.top_k, raw_scores=body.raw_scores,
                                                truncate=call.truncation(body)))
    return json_response(rows[0] if single else rows)


@router.post("/rerank", response_model=list[Rank], summary="Rank texts against a query, best first")
async def rerank(body: RerankRequest, call: Call = CallDep) -> Response:
    name = call.model(body.model)
    call.count(body.texts, "texts")
    ranks = await call.run(call.backend.rerank(name, body.query, body.texts, raw_scores=body.raw_scores,
                                               return_text=body.return_text, truncate=call.truncation(body),
                                               top_n=body.top_n))
    return json_response(ranks)


@router.post("/similarity", response_model=list[float], summary="Cosine similarity of a source to each sentence")
async def similarity(body: SimilarityRequest, call: Call = CallDep) -> Response:
    name = call.model(body.model)
    truncate = call.truncation(body.parameters)
    call.count(body.inputs.sentences, "sentences")
    scores = await call.run(call.backend.similarity(name, body.inputs.source_sentence, body.inputs.sentences,
                                                    truncate=truncate))
    return json_response(scores)


@router.post("/tokenize", response_model=list[list[SimpleToken]], summary="Tokens with ids and character offsets")
async def tokenize(body: TokenizeRequest, call: Call = CallDep) -> Response:
    call.model(body.model)
    call.truncation(body)
    texts, _ = call.texts(body.inputs)
    encodings = await asyncio.to_thread(call.m.tokenizer.encode, texts)
    return json_response([simple_tokens(e, t, body.add_special_tokens) for e, t in zip(encodings, texts, strict=True)])


@router.post("/decode", response_model=list[str], summary="Token ids back to text")
async def decode(body: DecodeRequest, call: Call = CallDep) -> Response:
    call.model(body.model)
    batch = body.ids if body.ids and isinstance(body.ids[0], list) else [body.ids]
    call.count(batch, "ids")
    for i, ids in enumerate(batch):
        call.decode_ids(ids, i)  # validates the range
    return json_response([call.m.decode(ids, skip_special_tokens=body.skip_special_tokens) for ids in batch])


@router.post("/ner", summary="Named entities (robertaops extension); transformers' token-classification output")
async def ner(body: NERRequest, call: Call = CallDep) -> Response:
    name = call.model(body.model)
    texts, single = call.texts(body.inputs)
    rows = await call.run(call.backend.ner(name, texts, aggregation=body.aggregation, truncate=bool(body.truncate)))
    return json_response(rows[0] if single else rows)


@router.post("/fill-mask", summary="Masked-token predictions (robertaops extension); transformers' fill-mask output")
async def fill_mask(body: FillMaskRequest, call: Call = CallDep) -> Response:
    name = call.model(body.model)
    texts, single = call.texts(body.inputs)
    rows = await call.run(call.backend.fill_mask(name, texts, top_k=body.top_k, truncate=bool(body.truncate)))
    return json_response(rows[0] if single else rows)


@router.get("/info", response_model=Info, summary="Model and router settings (TEI's /info)")
async def info(model: str | None = Query(None, description="a served model name"), call: Call = CallDep) -> Response:
    call.model(model)
    return json_response(tei_info(call))


@router.post("/", summary="TEI's catch-all: similarity for {source_sentence, sentences}, predict for a classifier, "
                          "embed otherwise")
async def compat(body: dict[str, Any] = AnyBody, call: Call = CallDep) -> Response:
    if isinstance(body.get("inputs"), dict):
        return await similarity(parse(SimilarityRequest, body), call)
    task = call.backend.model(call.model(body.get("model") if isinstance(body.get("model"), str) else None)).config.task
    if task == "sequence_classification" and "query" in body:
        return await rerank(parse(RerankRequest, body), call)
    if task == "sequence_classification":
        return await predict(parse(PredictRequest, body), call)
    return await embed(parse(EmbedRequest, body), call)


# -- helpers --------------------------------------------------------------------------------------------------------
def parse(schema: type[BaseModel], data: dict) -> Any:
    """Validate a raw body as `schema`, failing the way FastAPI's own validation fails (422 naming the field)."""
    return validated(schema.model_validate, data)


def predict_items(inputs: str | list) -> tuple[list[str | tuple[str, str]], bool]:
    """TEI's predict inputs: "text" | [text] | [text, text] (one input) | [[text] | [text, text], ...] (a batch)."""
    if isinstance(inputs, str):
        return [inputs], True
    if inputs and all(isinstance(x, str) for x in inputs):
        if len(inputs) > 2:
            raise InvalidInputError(f"a single input is a text or a pair [text, text], got {len(inputs)} strings; "
                                    "send a batch as [[text], [text, text], ...]")
        return [inputs[0] if len(inputs) == 1 else (inputs[0], inputs[1])], True
    items: list[str | tuple[str, str]] = []
    for i, x in enumerate(inputs):
        if not 1 <= len(x) <= 2:
            raise InvalidInputError(f"input {i} must be [text] or [text, text], got {len(x)} strings")
        items.append(x[0] if len(x) == 1 else (x[0], x[1]))
    return items, False


def simple_tokens(encoding: Any, text: str, add_special_tokens: bool) -> list[dict]:
    """TEI's token records; offsets are character offsets (TEI's are bytes: the same for ASCII)."""
    out = []
    rows = zip(encoding.ids, encoding.offsets, encoding.special_tokens_mask, encoding.tokens, strict=True)
    for token_id, (start, stop), special, token in rows:
        if special:
            if add_special_tokens:
                out.append({"id": token_id, "text": token, "special": True, "start": None, "stop": None})
        else:
            out.append({"id": token_id, "text": text[start:stop], "special": False, "start": start, "stop": stop})
    return out


def model_type(m: Any) -> dict:
    """TEI's model_type: {"embedding": {pooling}}, {"classifier"|"reranker": {id2label, label2id}}; ours adds
    {"token_classifier": ...} (NER) and {"fill_mask": {pooling}} (MLM models also embed)."""
    cfg = m.config
    labels = {"id2label": {str(i): label for i, label in enumerate(cfg.id2label)},
              "label2id": {label: i for i, label in enumerate(cfg.id2label)}}
    if cfg.task == "sequence_classification":
        return {"reranker" if len(cfg.id2label) == 1 else "classifier": labels}
    if cfg.task == "token_classification":
        return {"token_classifier": labels}
    return {"fill_mask" if cfg.task == "mlm" else "embedding": {"pooling": m.pooling}}


def tei_info(call: Call) -> dict:
    m, s = call.m, call.settings
    return {
        "model_id": m.name, "model_sha": m.weights_sha256, "model_dtype": m.dtype, "model_type": model_type(m),
        "max_concurrent_requests": s.max_concurrent_requests, "max_input_length": m.max_length,
        "max_batch_tokens": s.max_batch_tokens or default_batch_tokens(s.device),
        "max_batch_requests": s.max_batch_requests, "max_client_batch_size": s.max_client_batch_size,
        "auto_truncate": False, "tokenization_workers": None, "version": dist_version("robertaops"),
        "sha": None, "docker_label": None, "models": list(call.backend.names),
        "matmul": m.matmul, "int8_layer": m.int8_layer,
    }
