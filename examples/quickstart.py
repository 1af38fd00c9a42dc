"""Quickstart: what `make run` shows — embeddings, similarity, rerank and fill-mask, all offline.

Uses the default model (all-MiniLM-L6-v2, packaged on PyPI) and, when the shared data is beside the repo, the small
pretrained RoBERTa in ../shared/models/roberta-novels-small for fill-mask.
"""

import os
from pathlib import Path

import robertaops as ro

model = ro.load()  # all-MiniLM-L6-v2
print(model)

texts = ["A man is playing a guitar.", "Someone plays an instrument.", "The stock market fell sharply today."]
vectors = model.embed(texts)
print(f"\nembed: {vectors.shape[0]} texts -> {vectors.shape[1]}-d unit vectors")

print("\nsimilarity (cosine):")
for text, row in zip(texts, model.similarity(texts, texts), strict=True):
    print(f"  {text[:40]:<40} " + "  ".join(f"{s:5.2f}" for s in row))

query = "How do I learn music?"
print(f"\nrerank for {query!r}:")
for hit in model.rerank(query, texts):
    print(f"  {hit['score']:.3f}  {texts[hit['index']]}")

long_text = " ".join(["The quick brown fox jumps over the lazy dog."] * 400)  # ~4,400 tokens: windowed, not cut
print(f"\nlong input ({len(model.tokenize(long_text))} tokens) embeds whole: {model.embed(long_text).shape}")

data = Path(os.environ.get("ROBERTAOPS_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
novels = data.parent / "models" / "roberta-novels-small"
if novels.exists():
    mlm = ro.load(novels)
    print(f"\nfill-mask with {novels.name}:")
    for text in ["It was a dark and stormy <mask>.", "She opened the <mask> and looked outside."]:
        guesses = ", ".join(f"{c['token_str'].strip()} ({c['score']:.2f})" for c in mlm.fill_mask(text, top_k=5))
        print(f"  {text}  ->  {guesses}")
