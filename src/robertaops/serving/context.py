"""What the HTTP layer and the backend tell each other about the request being served, in a context variable.

The backend's task API (`embed(name, texts, ...)`) stays free of bookkeeping: the route's `Call.run` sets a
`RequestInfo` for the duration of the backend call; the backend reads the caller's key and headers (a canary's
stickiness) and writes back timings and which model answered (the x-*-time and x-served-by headers).
"""

from __future__ import annotations

import contextvars
from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass
class RequestInfo:
    """What the HTTP layer tells the backend about the current request, and what the backend tells it back. Set in a
    context variable (`REQUEST`) by whoever calls, so the task API stays free of this bookkeeping."""

    key: str | None = None  # the API key's name: a canary's stickiness
    headers: Mapping[str, str] | None = None  # request headers, looked up by lower-case name: a canary's stickiness
    timings: dict[str, float] = field(default_factory=dict)  # seconds of tokenization, queue, inference; tokens
    served_by: str | None = None  # the model that answered, when a canary sent the request to the candidate


REQUEST: contextvars.ContextVar[RequestInfo | None] = contextvars.ContextVar("robertaops_request", default=None)
