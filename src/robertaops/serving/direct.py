"""Direct dispatch of the inference routes: their own endpoint functions, called without FastAPI's per-request
machinery.

FastAPI stays the application: it declares every route, serves the OpenAPI page and answers every other path. But
for the inference POST routes, whose endpoints all take `(body, call)`, routing through the included routers,
dependency solving, body reading and response handling cost the event loop about 0.3 ms of CPU per request
(py-spy under load, benchmarks/RESULTS.md) — CPU that a small machine takes from the model. The request middleware,
which has already authenticated the caller and read the body, looks the route up here and calls its endpoint
itself, doing what FastAPI would have done for such a route and nothing else:
- the body is parsed as JSON and validated against the endpoint's own `body` annotation, in Python mode, errors
  located under "body" (FastAPI's shape, so the 4xx messages are the same);
- the key's role is checked by the same `authorize` that the routes' `require(role)` dependency runs;
- errors are raised to the middleware, which answers them from the one error table (errors.py).
A route qualifies only if its signature is exactly `(body, call)` and its role is known from `require`.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable, Iterable
from typing import Any, get_type_hints

from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute, APIRouter
from pydantic import TypeAdapter, ValidationError
from starlette.requests import Request
from starlette.types import Message, Scope, Send

from .deps import Call, authorize


def validated(validate: Callable[[Any], Any], data: Any) -> Any:
    """`validate(data)`, failing the way FastAPI's body validation fails (422 naming the field)."""
    try:
        return validate(data)
    except ValidationError as exc:
        raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in exc.errors()]) from None


async def _disconnected() -> Message:  # the body has been read already: nothing more will come
    return {"type": "http.disconnect"}


class DirectRoute:
    def __init__(self, route: APIRoute, role: str):
        self.route = route
        self.role = role
        self.endpoint = route.endpoint
        self.body = TypeAdapter(get_type_hints(route.endpoint)["body"])

    def parse(self, body: bytes) -> Any:
        if not body:
            raise RequestValidationError([{"type": "missing", "loc": ("body",), "msg": "Field required",
                                           "input": None}])
        try:
            data = json.loads(body)  # the stdlib parser, as FastAPI's: the same errors, NaN and surrogates
        except json.JSONDecodeError as exc:
            raise RequestValidationError([{"type": "json_invalid", "loc": ("body", exc.pos), "msg": "JSON decode error",
                                           "input": {}, "ctx": {"error": exc.msg}}]) from None
        return validated(self._validate, data)

    def _validate(self, data: Any) -> Any:
        return self.body.validate_python(data, from_attributes=True)  # as FastAPI validates a body field

    async def handle(self, scope: Scope, body: bytes, send: Send) -> None:
        scope["route"] = self.route  # metrics and the access log label requests by route template
        request = Request(scope)
        authorize(request, self.role)
        response = await self.endpoint(self.parse(body), Call(request))
        await response(scope, _disconnected, send)


class DirectRoutes:
    """(method, path) -> DirectRoute, filled once the routes are included (the middleware is built on first use)."""

    def __init__(self) -> None:
        self.table: dict[tuple[str, str], DirectRoute] = {}

    def collect(self, routers: Iterable[APIRouter]) -> None:
        """Take over the routes of `routers` that qualify (included in the app without a prefix of their own); the
        others stay with FastAPI."""
        for router in routers:
            for route in router.routes:
                if not isinstance(route, APIRoute) or route.methods != {"POST"}:
                    continue
                roles = [d.dependency.role for d in route.dependencies if hasattr(d.dependency, "role")]
                if list(inspect.signature(route.endpoint).parameters) == ["body", "call"] and len(roles) == 1:
                    self.table[("POST", route.path)] = DirectRoute(route, roles[0])

    def match(self, scope: Scope) -> DirectRoute | None:
        return self.table.get((scope["method"], scope["path"]))
