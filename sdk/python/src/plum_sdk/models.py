"""Wire types (camelCase JSON on the wire, snake_case here) and the discovery filters."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any


def _int(v: Any) -> int:
    try:
        return int(v)
    except (TypeError, ValueError):
        return 0


@dataclass(frozen=True)
class KvItem:
    namespace: str
    key: str
    value: str
    type: str = "string"
    updated_at: int = 0
    version: int = 0
    mod_index: int = 0

    @staticmethod
    def from_json(d: dict[str, Any]) -> KvItem:
        return KvItem(str(d.get("namespace", "")), str(d.get("key", "")), str(d.get("value", "")),
                      str(d.get("type") or "string"), _int(d.get("updatedAt")), _int(d.get("version")),
                      _int(d.get("modIndex")))


@dataclass(frozen=True)
class KvWritten:
    namespace: str
    key: str
    value: str
    type: str
    version: int

    @staticmethod
    def from_json(d: dict[str, Any]) -> KvWritten:
        return KvWritten(str(d.get("namespace", "")), str(d.get("key", "")), str(d.get("value", "")),
                         str(d.get("type") or "string"), _int(d.get("version")))


@dataclass(frozen=True)
class KvChange:
    """The items under a watched prefix after a change, and the change's index."""

    index: int
    items: list[KvItem]


@dataclass(frozen=True)
class Endpoint:
    service_name: str
    instance_id: str
    node_id: str
    ip: str
    port: int
    protocol: str
    version: str
    labels: dict[str, str] = field(default_factory=dict, hash=False, compare=True)
    healthy: bool = True
    last_seen: int = 0

    @staticmethod
    def from_json(d: dict[str, Any]) -> Endpoint:
        labels = d.get("labels") or {}
        return Endpoint(str(d.get("serviceName", "")), str(d.get("instanceId", "")), str(d.get("nodeId", "")),
                        str(d.get("ip", "")), _int(d.get("port")), str(d.get("protocol", "")),
                        str(d.get("version", "")), {str(k): str(v) for k, v in labels.items()},
                        bool(d.get("healthy", True)), _int(d.get("lastSeen")))

    @property
    def address(self) -> str:
        return f"{self.ip}:{self.port}"


# ---- version filters: exact, or a semver range (the controller's rule, docs/API.md) ---------

_SEMVER = re.compile(r"^v?(\d+)\.(\d+)\.(\d+)(?:-([0-9A-Za-z.-]+))?(?:\+[0-9A-Za-z.-]+)?$")
_COMPARATOR = re.compile(r"^(\^|~|>=|<=|>|<|=)?\s*v?(\*|\d+)(?:\.(\*|x|\d+))?(?:\.(\*|x|\d+))?(?:-([0-9A-Za-z.-]+))?$")


def _parse_version(text: str) -> tuple[int, int, int, tuple[Any, ...]] | None:
    m = _SEMVER.match(text.strip())
    if not m:
        return None
    pre = tuple((0, int(p)) if p.isdigit() else (1, p) for p in m.group(4).split(".")) if m.group(4) else ()
    return int(m.group(1)), int(m.group(2)), int(m.group(3)), pre


def _key(v: tuple[int, int, int, tuple[Any, ...]]) -> tuple[Any, ...]:
    # A pre-release sorts before its release.
    return (v[0], v[1], v[2], 0 if v[3] else 1, v[3])


class VersionFilter:
    """``version=`` of discovery: an exact match unless it starts with a comparison operator or
    holds several comparators (``^1.2``, ``~1.4.0``, ``>=1.0, <2.0``, ``*``): then a semver range
    with Cargo's rules, as the controller and the Rust SDK apply it. A version that is not semver
    only ever matches exactly; a malformed range is a ``ValueError``."""

    def __init__(self, text: str) -> None:
        self.text = text
        t = text.strip()
        self.exact = not (t[:1] in ("^", "~", ">", "<", "=", "*") or "," in t)
        self._bounds: list[tuple[str, tuple[int, int, int, tuple[Any, ...]]]] = []
        if not self.exact:
            for part in t.split(","):
                self._bounds += self._comparator(part.strip())

    def _comparator(self, part: str) -> list[tuple[str, tuple[int, int, int, tuple[Any, ...]]]]:
        m = _COMPARATOR.match(part)
        if not m or not part:
            raise ValueError(f"`{self.text}` is not a semver range")
        op, major, minor, patch, pre = m.group(1) or "^", m.group(2), m.group(3), m.group(4), m.group(5)
        wild = lambda x: x is None or x in ("*", "x")  # noqa: E731
        if major == "*":
            return []
        ma = int(major)
        mi = None if wild(minor) else int(minor)  # type: ignore[arg-type]
        pa = None if wild(patch) else int(patch)  # type: ignore[arg-type]
        pr: tuple[Any, ...] = tuple((0, int(p)) if p.isdigit() else (1, p) for p in pre.split(".")) if pre else ()
        lo = (ma, mi or 0, pa or 0, pr)
        if op == "=":
            if mi is None:
                return [(">=", lo), ("<", (ma + 1, 0, 0, ()))]
            if pa is None:
                return [(">=", lo), ("<", (ma, mi + 1, 0, ()))]
            return [("=", lo)]
        if op in (">", ">=", "<", "<="):
            if op == ">" and (mi is None or pa is None):
                return [(">=", (ma + 1, 0, 0, ()) if mi is None else (ma, mi + 1, 0, ()))]
            if op == "<=" and (mi is None or pa is None):
                return [("<", (ma + 1, 0, 0, ()) if mi is None else (ma, mi + 1, 0, ()))]
            return [(op, lo)]
        if op == "~":
            hi = (ma + 1, 0, 0, ()) if mi is None else (ma, mi + 1, 0, ())
            return [(">=", lo), ("<", hi)]
        # caret
        if ma > 0 or mi is None:
            hi = (ma + 1, 0, 0, ())
        elif mi > 0 or pa is None:
            hi = (0, mi + 1, 0, ())
        else:
            hi = (0, 0, pa + 1, ())
        return [(">=", lo), ("<", hi)]

    def matches(self, version: str) -> bool:
        if self.exact:
            return version == self.text
        v = _parse_version(version)
        if v is None:
            return False
        if v[3] and not any(b[1][3] and b[1][:3] == v[:3] for b in self._bounds):
            return False  # pre-releases match only a comparator naming that same version
        k = _key(v)
        for op, b in self._bounds:
            kb = _key(b)
            ok = {"=": k == kb, ">": k > kb, ">=": k >= kb, "<": k < kb, "<=": k <= kb}[op]
            if not ok:
                return False
        return True

    def __repr__(self) -> str:
        return f"VersionFilter({self.text!r})"


@dataclass(frozen=True)
class Query:
    """Filters over a service's cached endpoints: version (exact or semver range), protocol,
    and labels (every one, with that value)."""

    version: str | None = None
    protocol: str | None = None
    labels: dict[str, str] = field(default_factory=dict)

    def matcher(self) -> VersionFilter | None:
        return VersionFilter(self.version) if self.version is not None else None

    def matches(self, e: Endpoint, version: VersionFilter | None = None) -> bool:
        vf = version if version is not None else self.matcher()
        return ((vf is None or vf.matches(e.version))
                and (self.protocol is None or self.protocol == e.protocol)
                and all(e.labels.get(k) == v for k, v in self.labels.items()))
