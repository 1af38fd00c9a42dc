"""One error hierarchy for robertaops.

Every error a user can cause is a `RobertaOpsError` with a stable `error_type` string. The CLI prints the message
(never a traceback) and the server maps `error_type` to an HTTP status in one table (serving/errors.py). Messages
name the bad value and, where there is a closed set, the allowed ones.
"""

from __future__ import annotations


class RobertaOpsError(Exception):
    """Base class: a user-facing error with a machine-readable `error_type`."""

    error_type = "internal"


class InvalidInputError(RobertaOpsError, ValueError):
    """The caller's input is malformed (wrong type, bad value, undecodable bytes)."""

    error_type = "invalid_input"


class ModelNotFoundError(RobertaOpsError, FileNotFoundError):
    """A model path or hub id that cannot be resolved to a checkpoint."""

    error_type = "model_not_found"


class CheckpointError(RobertaOpsError):
    """A checkpoint exists but is wrong: bad config, missing/unexpected keys, shape mismatches."""

    error_type = "invalid_checkpoint"


class ManifestError(CheckpointError):
    """A checkpoint's files differ from its manifest.json (changed, missing or added after it was written)."""

    error_type = "manifest_mismatch"


class TokenizerMismatchError(CheckpointError):
    """The tokenizer files do not belong to this model (vocabulary or special-token ids disagree with config.json)."""

    error_type = "tokenizer_mismatch"


class UnsupportedTaskError(RobertaOpsError):
    """The loaded model has no head for the requested task (e.g. classify on a bare encoder)."""

    error_type = "unsupported_task"


def choices(values) -> str:
    """Format allowed values for an error message: 'a', 'b' or 'c'."""
    quoted = [repr(v) for v in values]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " or " + quoted[-1]


# -- serving: errors a client can cause or meet (the server maps each error_type to a status in one table) --------
class PayloadTooLargeError(InvalidInputError):
    """The request body is larger than --payload-limit."""

    error_type = "payload_too_large"


class TooManyInputsError(InvalidInputError):
    """More inputs in one request than --max-client-batch-size."""

    error_type = "too_many_inputs"


class OverloadedError(RobertaOpsError):
    """The queue is full (--max-concurrent-requests, counted per input); retry later."""

    error_type = "overloaded"

    def __init__(self, message: str, retry_after: float = 1.0):
        super().__init__(message)
        self.retry_after = retry_after


class RateLimitedError(OverloadedError):
    """This API key spent its token bucket; retry later."""

    error_type = "rate_limited"


class DeadlineExceededError(RobertaOpsError):
    """The request's inputs did not run before its timeout."""

    error_type = "timeout"


class UnauthorizedError(RobertaOpsError):
    """No API key, or one that matches no key on file."""

    error_type = "unauthorized"


class ForbiddenError(RobertaOpsError):
    """A valid API key whose role does not allow this route."""

    error_type = "forbidden"


class InvalidJSONError(InvalidInputError):
    """The body is not JSON (or not UTF-8): nothing to validate."""

    error_type = "invalid_json"


class UnsupportedMediaTypeError(InvalidInputError):
    """A body that is not declared as JSON (e.g. curl -d's form encoding)."""

    error_type = "unsupported_media_type"


class ConflictError(RobertaOpsError):
    """The request contradicts the server's current state (a model name already served, unloading the last one)."""

    error_type = "conflict"


class NotReadyError(RobertaOpsError):
    """The models are still loading or warming up."""

    error_type = "not_ready"


# -- training: data files a user points at ------------------------------------------------------------------------
class DataError(InvalidInputError):
    """A training/evaluation data file that cannot be used: unreadable, a bad row (named by file:line), a missing
    column, or a label the model does not know."""

    error_type = "invalid_data"


# -- search: an index on disk and the model asked to query it ------------------------------------------------------
class IndexNotFoundError(RobertaOpsError, FileNotFoundError):
    """No search index at the given directory (or no index of that name on the server)."""

    error_type = "index_not_found"


class StaleIndexError(RobertaOpsError):
    """The index was built with another model (or model version) than the one asked to query it: its embeddings
    would be compared with query embeddings from a different space. `robertaops index rebuild` re-embeds."""

    error_type = "stale_index"


class DocumentNotFoundError(RobertaOpsError):
    """A document id that is not in the index (delete)."""

    error_type = "document_not_found"


# -- registry: model versions, aliases and the store behind them -------------------------------------------------
class RegistryError(RobertaOpsError):
    """The model registry cannot do what was asked: unreachable store, a bad alias, a malformed models:/ URI."""

    error_type = "registry_error"


class RegistryNotFoundError(RegistryError, ModelNotFoundError):
    """No registered model, version or alias of that name."""

    error_type = "model_not_found"
