"""Inference pipelines (embed, classify, ner, fill_mask, rerank, similarity) over one batching Runner."""
