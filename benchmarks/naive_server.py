"""The naive baseline for benchmarks/load.py: FastAPI running transformers once per request, no batching.

What many teams write first: tokenizer + AutoModel, mean pooling and normalisation per request, in the request
handler. Same JSON shape as TEI's /embed so the same load generator drives both.

Run: python benchmarks/naive_server.py --model DIR --port 8181
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel
from transformers import AutoModel, AutoTokenizer


class EmbedRequest(BaseModel):
    inputs: str | list[str]
    normalize: bool = True


def build(model_dir: str) -> FastAPI:
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModel.from_pretrained(model_dir).eval()
    app = FastAPI()

    @app.get("/health")
    def health() -> dict:
        return {"ok": True}

    @app.post("/embed")
    def embed(req: EmbedRequest) -> list[list[float]]:
        texts = [req.inputs] if isinstance(req.inputs, str) else req.inputs
        batch = tokenizer(texts, padding=True, truncation=True, return_tensors="pt")
        with torch.inference_mode():
            hidden = model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1)
        return (F.normalize(pooled, dim=-1) if req.normalize else pooled).tolist()

    return app


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8181)
    args = ap.parse_args()
    uvicorn.run(build(args.model), host=args.host, port=args.port, log_level="warning")
