"""robertaops: a RoBERTa-family encoder from checkpoint to production.

    import robertaops as ro
    m = ro.load()                       # the default model, all-MiniLM-L6-v2 (offline)
    m.embed(["a sentence", "another"])  # (2, 384) float32, L2-normalised
"""

from .api import Model, load
from .errors import (
    CheckpointError,
    InvalidInputError,
    ModelNotFoundError,
    RobertaOpsError,
    UnsupportedTaskError,
)

__version__ = "0.1.0"
__all__ = [
    "CheckpointError", "InvalidInputError", "Model", "ModelNotFoundError", "RobertaOpsError",
    "UnsupportedTaskError", "load", "__version__",
]
