"""OpenAI-compatible routes: POST /v1/embeddings (float or base64) and GET /v1/models, so the `openai` client and
anything built on it (LangChain, LlamaIndex, ...) work unchanged with `base_url=http://host:port/v1`.

`input` may be token ids, as OpenAI allows; they must be ids of the served model's tokenizer (they are decoded and
run like text), not tiktoken ids. `dimensions` keeps the first N dimensions and re-normalizes (Matryoshka).
"""

from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import Response

from .deps import Call, get_call, json_response, require
from .schemas import OpenAIEmbeddingRequest, OpenAIEmbeddingResponse, OpenAIModel, OpenAIModelList
from .vectors import check_dimensions, shorten, to_base64

router = APIRouter(prefix="/v1", dependencies=[require("infer")], tags=["OpenAI"])
CallDep = Depends(get_call)


@router.post("/embeddings", response_model=OpenAIEmbeddingResponse, summary="OpenAI embeddings")
async def embeddings(body: OpenAIEmbeddingRequest, call: Call = CallDep) -> Response:
    name = call.model(body.model)
    texts, _ = call.texts(body.input, "input")
    dims = check_dimensions(body.dimensions, call.m.dimension)
    vectors = shorten(await call.run(call.backend.embed(name, texts, normalize=True)), dims, True)
    tokens = int(call.state["request_info"].timings["tokens"])  # counted by the backend as it tokenized
    b64 = body.encoding_format == "base64"
    data = [{"object": "embedding", "index": i, "embedding": to_base64(v) if b64 else v} for i, v in enumerate(vectors)]
    return json_response({"object": "list", "data": data, "model": name,
                          "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})


@router.get("/models", response_model=OpenAIModelList, summary="Served models, the default first")
async def models(call: Call = CallDep) -> Response:
    return json_response({"object": "list", "data": [model_card(call, n) for n in call.backend.names]})


@router.get("/models/{model}", response_model=OpenAIModel, summary="One served model")
async def model(model: str, call: Call = CallDep) -> Response:
    return json_response(model_card(call, call.model(model)))


def model_card(call: Call, name: str) -> dict:
    return {"id": name, "object": "model", "created": call.request.app.state.started, "owned_by": "robertaops"}
