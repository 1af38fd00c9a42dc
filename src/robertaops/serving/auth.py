"""API keys: a file of hashed keys with roles, a Bearer check, and a per-key token-bucket rate limit.

Key file (`--api-keys FILE`), one key per line, `#` starts a comment:

    sha256:<hex sha256 of the key> <role>[,<role>...] [name]

Roles: `infer` (every model route) and `admin` (the /admin routes; an admin key may also infer). Only hashes are
stored, so the file is not a secret; `robertaops keys add --file F --role infer` prints a new key once and appends
its hash. With no key file the server is open (a warning is logged at start-up).

The check compares the presented key's hash with every entry using `hmac.compare_digest` (constant time, and no
early exit), so timing says nothing about which entry nearly matched.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import ForbiddenError, InvalidInputError, RateLimitedError, UnauthorizedError

ROLES = ("infer", "admin")
KEY_PREFIX = "rok_"


@dataclass(frozen=True)
class Key:
    digest: str  # hex sha256 of the key
    roles: frozenset[str]
    name: str

    def allows(self, role: str) -> bool:
        return role in self.roles or "admin" in self.roles


ANONYMOUS = Key(digest="", roles=frozenset(ROLES), name="anonymous")


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def parse_keys(text: str, source: str = "key file") -> list[Key]:
    keys = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        fields = line.split(None, 2)
        where = f"{source} line {number}"
        if len(fields) < 2 or not fields[0].startswith("sha256:"):
            raise InvalidInputError(f"{where}: expected 'sha256:<hex> <role>[,role] [name]', got {line!r}")
        digest = fields[0].removeprefix("sha256:").lower()
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise InvalidInputError(f"{where}: the digest must be 64 hex characters")
        roles = frozenset(r.strip() for r in fields[1].split(",") if r.strip())
        if not roles or not roles <= set(ROLES):
            raise InvalidInputError(f"{where}: roles {sorted(roles)}; allowed: {', '.join(ROLES)}")
        keys.append(Key(digest, roles, fields[2].strip() if len(fields) > 2 else f"key-{number}"))
    return keys


def load_keys(path: Path) -> list[Key]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidInputError(f"cannot read the API key file {str(path)!r}: {exc.strerror or exc}") from exc
    return parse_keys(text, str(path))


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def add_key(path: Path, roles: list[str], name: str | None = None) -> str:
    """Create a key, append its hash to `path` (created if missing), return the key (shown once, never stored)."""
    bad = [r for r in roles if r not in ROLES]
    if bad or not roles:
        raise InvalidInputError(f"unknown role(s) {bad or roles}; choose from {', '.join(ROLES)}")
    if name is not None and (not name.strip() or any(c.isspace() or c == "#" for c in name)):
        raise InvalidInputError(f"key name {name!r} must be one word without '#'")
    existing = load_keys(path) if path.exists() else []
    key = new_key()
    line = f"sha256:{hash_key(key)} {','.join(roles)} {name or f'key-{len(existing) + 1}'}\n"
    with open(path, "a", encoding="utf-8") as f:
        f.write(line)
    return key


class Keyring:
    """The keys of a server (None = open) plus their rate-limit buckets."""

    def __init__(self, keys: list[Key] | None, rate: float | None = None, burst: int = 20):
        self.keys = keys
        self.limiter = TokenBucket(rate, burst) if rate else None

    @property
    def open(self) -> bool:
        return self.keys is None

    def authenticate(self, authorization: str | None, client: str = "anonymous") -> Key:
        if self.keys is None:  # open server: rate-limit per client address
            key = Key("", ANONYMOUS.roles, client)
        else:
            key = self._match(authorization)
        if self.limiter is not None:
            self.limiter.take(key.digest or key.name)
        return key

    def _match(self, authorization: str | None) -> Key:
        scheme, _, token = (authorization or "").partition(" ")
        token = token.strip()
        if not authorization:
            raise UnauthorizedError("missing API key: send 'Authorization: Bearer <key>'")
        if scheme.lower() != "bearer" or not token:
            raise UnauthorizedError("the Authorization header must be 'Bearer <key>'")
        digest = hash_key(token)
        found = None
        for key in self.keys or ():
            if hmac.compare_digest(digest, key.digest):  # every entry compared: no early exit
                found = key
        if found is None:
            raise UnauthorizedError("invalid API key")
        return found

    @staticmethod
    def authorize(key: Key, role: str) -> None:
        if not key.allows(role):
            raise ForbiddenError(f"API key {key.name!r} has roles {sorted(key.roles)}; this route needs {role!r}")


class TokenBucket:
    """`rate` requests per second per key, bursts of up to `burst`; a refused request costs nothing."""

    def __init__(self, rate: float, burst: int, clock=time.monotonic):
        self.rate, self.burst, self.clock = rate, max(1, burst), clock
        self.buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, last refill time)

    def take(self, who: str) -> None:
        now = self.clock()
        if len(self.buckets) > 10_000:  # forget full buckets, so many clients cannot grow this without bound
            self.buckets = {k: v for k, v in self.buckets.items() if v[0] + (now - v[1]) * self.rate < self.burst}
        tokens, last = self.buckets.get(who, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - last) * self.rate)
        if tokens < 1.0:
            self.buckets[who] = (tokens, now)
            raise RateLimitedError(f"rate limit of {self.rate:g} requests/s (burst {self.burst}) exceeded",
                                   retry_after=(1.0 - tokens) / self.rate)
        self.buckets[who] = (tokens - 1.0, now)
