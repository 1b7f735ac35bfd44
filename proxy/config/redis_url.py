"""REDIS_URL, parsed once: its mode (standalone, Cluster, Sentinel), seed nodes and database.

redis://[:password@]host:port/db            rediss:// for TLS, unix:///path.sock?db=0
redis+cluster://[:password@]host:port[,host:port...]     any seed nodes of a Redis Cluster
redis+sentinel://[:password@]host:port[,host:port...]/service_name[/db]
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote

from yarl import URL

from proxy.config.secrets import Secret, shown_url

SCHEMES = {
    "redis": "standalone",
    "rediss": "standalone",
    "unix": "standalone",
    "redis+cluster": "cluster",
    "rediss+cluster": "cluster",
    "redis+sentinel": "sentinel",
}
MAX_DB = 65535


class RedisUrlError(ValueError):
    """REDIS_URL is unusable; `str()` says why and shows the URL with its password masked."""


@dataclass(frozen=True, slots=True, repr=False)
class RedisTarget:
    """Where REDIS_URL points. Standalone URLs are handed to redis-py whole, so for them only
    `mode` and `db` are filled in; Cluster and Sentinel URLs are taken apart here."""

    mode: str  # "standalone", "cluster" or "sentinel"
    tls: bool = False
    nodes: tuple[tuple[str, int], ...] = ()
    username: str | None = None
    password: Secret | None = None
    service: str | None = None  # Sentinel's name for the master
    db: int = 0

    def __repr__(self) -> str:
        return f"RedisTarget(mode={self.mode!r}, nodes={self.nodes!r})"


def parse_redis_url(url: str) -> RedisTarget:
    """The target of a REDIS_URL, or RedisUrlError naming what is wrong."""
    scheme = url.partition("://")[0].lower()
    mode = SCHEMES.get(scheme)
    if mode is None:
        raise RedisUrlError(
            "must start with redis://, rediss://, unix://, redis+cluster:// or "
            f"redis+sentinel://, got {shown_url(url)!r}"
        )
    if mode == "standalone":
        return _standalone(url, scheme)
    try:
        nodes, username, password, path = _split_nodes(url)
    except ValueError as exc:
        raise RedisUrlError(str(exc)) from None
    secret = Secret(password, "env:REDIS_URL") if password is not None else None
    if mode == "cluster":
        return RedisTarget(mode, scheme.startswith("rediss"), nodes, username, secret)
    if not path:
        raise RedisUrlError(f"redis+sentinel:// needs /service_name, got {shown_url(url)!r}")
    db = _db(url, "/".join(path[1:])) if len(path) > 1 else 0
    return RedisTarget(mode, False, nodes, username, secret, service=path[0], db=db)


def _standalone(url: str, scheme: str) -> RedisTarget:
    try:
        parsed = URL(url)
    except (ValueError, TypeError):
        raise RedisUrlError(f"not a URL: {shown_url(url)!r}") from None
    db = 0
    if scheme != "unix" and parsed.path.strip("/"):
        db = _db(url, parsed.path.strip("/"))
    if "db" in parsed.query:
        db = _db(url, parsed.query["db"])
    return RedisTarget("standalone", scheme == "rediss", db=db)


def _db(url: str, text: str) -> int:
    """The database number: a whole number, never silently database 0."""
    if not text.isascii() or not text.isdigit() or int(text) > MAX_DB:
        raise RedisUrlError(
            f"the database must be a number from 0 to {MAX_DB}, got {text!r} in {shown_url(url)!r}"
        )
    return int(text)


def _split_nodes(
    url: str,
) -> tuple[tuple[tuple[str, int], ...], str | None, str | None, tuple[str, ...]]:
    """Split `scheme://[user:pass@]h1:p1,h2:p2[/a/b]`; ValueError names what is wrong."""
    _scheme, sep, rest = url.partition("://")
    if not sep:
        raise ValueError("not a URL")
    # The userinfo runs to the last "@" (a password may hold an unescaped "/"): what follows
    # is the nodes and the path, and nothing of the password reaches an error below.
    userinfo, at, remainder = rest.rpartition("@")
    if not at:
        userinfo, remainder = "", rest
    hosts, _, path = remainder.partition("/")
    username = password = None
    if userinfo:
        user, colon, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
    nodes: list[tuple[str, int]] = []
    for item in hosts.split(","):
        host, colon, port = item.strip().rpartition(":")
        if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"each node must be host:port, got {item.strip()!r}")
        nodes.append((host.strip("[]"), int(port)))
    return tuple(nodes), username, password, tuple(p for p in path.split("/") if p)
