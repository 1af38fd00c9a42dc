"""robertaops: a RoBERTa-family encoder from checkpoint to production.

    import robertaops as ro
    m = ro.load()                       # the default model, all-MiniLM-L6-v2 (offline)
    m.embed(["a sentence", "another"])  # (2, 384) float32, L2-normalised

`Model` and `load` are imported on first use (PEP 562), so importing the package (and `robertaops --help`)
does not pay for torch.
"""

from typing import TYPE_CHECKING

from .errors import (
    CheckpointError,
    InvalidInputError,
    ModelNotFoundError,
    RobertaOpsError,
    UnsupportedTaskError,
)

if TYPE_CHECKING:
    from .api import Model, load
    from .cascade import Cascade

__version__ = "0.1.0"
__all__ = [
    "Cascade", "CheckpointError", "InvalidInputError", "Model", "ModelNotFoundError", "RobertaOpsError",
    "UnsupportedTaskError", "load", "__version__",
]


def __getattr__(name: str):
    if name in ("Model", "load"):
        from . import api

        return getattr(api, name)
    if name == "Cascade":
        from .cascade import Cascade

        return Cascade
    raise AttributeError(f"module 'robertaops' has no attribute {name!r}")
