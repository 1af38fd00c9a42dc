"""Request and response bodies. TEI's JSON shapes exactly (field names, defaults, single-vs-batch forms), OpenAI's
for /v1, and ours for /ner and /fill-mask.

Every request may also carry `model` (our extension): the name of a served model; absent = the first (default).
Unknown fields are ignored, as TEI (serde) ignores them, so clients that send extra parameters keep working.
Responses are declared here for the OpenAPI page; routes send the JSON directly (validating thousands of floats
through pydantic on the way out costs more than the forward pass of a short input).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

# A text, a list of token ids, or a batch of either (TEI and OpenAI both accept ids).
Inputs = str | list[int] | list[str | list[int]]
Texts = str | list[str]
TruncationDirection = Literal["right", "left", "Right", "Left"]

MODEL_FIELD = Field(None, description="name of a served model (robertaops extension); default: the first one",
                    examples=[None])


class _Request(BaseModel):
    model: str | None = MODEL_FIELD


class _Truncation(BaseModel):
    truncate: bool | None = Field(None, description="cut inputs longer than the model's window to the first window "
                                                    "instead of splitting them into overlapping windows")
    truncation_direction: TruncationDirection = Field("right", description="only 'right' is supported")


# -- TEI ----------------------------------------------------------------------------------------------------------
class EmbedRequest(_Request, _Truncation):
    inputs: Inputs = Field(examples=["What is Deep Learning?"])
    normalize: bool = True
    prompt_name: str | None = Field(None, description="not supported: the served models define no prompts")
    dimensions: int | None = Field(None, ge=1, description="keep the first N dimensions (Matryoshka), re-normalized")
    pooling: Literal["cls", "mean", "max"] | None = Field(None, description="robertaops extension; default: the "
                                                                            "model's own pooling")


class EmbedAllRequest(_Request, _Truncation):
    inputs: Inputs = Field(examples=["What is Deep Learning?"])
    prompt_name: str | None = None


class PredictRequest(_Request, _Truncation):
    inputs: str | list[str] | list[list[str]] = Field(
        description="a text, a pair [text, text], or a batch [[text], [text, text], ...]",
        examples=["I like you."])
    raw_scores: bool = False
    top_k: int | None = Field(None, ge=1, description="robertaops extension; default: every label, best first")


class Prediction(BaseModel):
    score: float
    label: str


class RerankRequest(_Request, _Truncation):
    query: str = Field(examples=["What is Deep Learning?"])
    texts: list[str] = Field(examples=[["Deep Learning is ..."]])
    raw_scores: bool = False
    return_text: bool = False
    top_n: int | None = Field(None, ge=1, description="robertaops extension: keep the best N")


class Rank(BaseModel):
    index: int
    score: float
    text: str | None = None


class TokenizeRequest(_Request):
    inputs: Texts = Field(examples=["test"])
    add_special_tokens: bool = True
    prompt_name: str | None = None


class SimpleToken(BaseModel):
    id: int
    text: str
    special: bool
    start: int | None = Field(description="character offset in the input; null for special tokens")
    stop: int | None


class DecodeRequest(_Request):
    ids: list[int] | list[list[int]] = Field(examples=[[0, 1, 2]])
    skip_special_tokens: bool = True


class SimilarityInput(BaseModel):
    source_sentence: str
    sentences: list[str]


class SimilarityParameters(_Truncation):
    prompt_name: str | None = None


class SimilarityRequest(_Request):
    inputs: SimilarityInput
    parameters: SimilarityParameters | None = None


class Info(BaseModel):
    model_id: str
    model_sha: str | None
    model_dtype: str
    model_type: dict
    max_concurrent_requests: int
    max_input_length: int
    max_batch_tokens: int
    max_batch_requests: int | None
    max_client_batch_size: int
    auto_truncate: bool
    tokenization_workers: int | None
    version: str
    sha: str | None = None
    docker_label: str | None = None
    models: list[str] = Field(description="robertaops extension: every served model name, the default first")
    matmul: str = Field(description="robertaops extension: what runs the Linears: amx, int_mm, onednn-packed, torch")
    int8_layer: str | None = Field(description="robertaops extension, int8 models: aot, torch.compile or eager (no "
                                               "C++ compiler: half the speed or less)")


# -- robertaops extensions ------------------------------------------------------------------------------------------
class NERRequest(_Request):
    inputs: Texts = Field(examples=["My name is Wolfgang and I live in Berlin."])
    aggregation: Literal["none", "simple", "first", "average", "max"] = "simple"
    truncate: bool | None = None


class FillMaskRequest(_Request):
    inputs: Texts = Field(examples=["Paris is the <mask> of France."])
    top_k: int = Field(5, ge=1, le=1000)
    truncate: bool | None = None


# -- OpenAI --------------------------------------------------------------------------------------------------------
class OpenAIEmbeddingRequest(BaseModel):
    input: Inputs = Field(examples=["The food was delicious."])
    model: str | None = Field(None, description="a served model name; default: the first")
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(None, ge=1)
    user: str | None = None


class OpenAIEmbedding(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str = Field(description="floats, or base64 of little-endian float32 bytes")


class OpenAIUsage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class OpenAIEmbeddingResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[OpenAIEmbedding]
    model: str
    usage: OpenAIUsage


class OpenAIModel(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "robertaops"


class OpenAIModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[OpenAIModel]


class ErrorBody(BaseModel):
    error: str
    error_type: str
