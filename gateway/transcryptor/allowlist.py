"""The transcryptor's own policy: which caller may convert which domain pairs, for which activity.

Default deny. A TOML file, re-read when it changes::

    [enrol]
    # Who may fetch its own domain's factor: certificate identity patterns.
    callers = ["schakel://node/*", "schakel://partner/*/*"]

    [[allow]]
    id = "nodes-own-domain"              # recorded in the audit log when it decides
    callers = ["schakel://node/*"]       # identity URI patterns
    from = ["Y", "@caller"]              # "Y": a fresh encryption under the federation key;
                                         # "@caller": the calling node's own domain
    to = ["*"]                           # domain patterns; "@caller" works here too
    activities = ["zvh.*"]               # processing activity patterns

Patterns are shell-style (``*`` matches anything, ``?`` one character). A
pair is allowed when one rule admits the caller, the activity, the source
and the target; a call is allowed when every pair in it is.
"""

from __future__ import annotations

import fnmatch
import os
import threading
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from certs.identity import Identity, PeerKind
from gateway.errors import DeniedError, quote

GLOBAL_KEY = "Y"
"""The source of a fresh encryption under the federation key, as policies write it."""
CALLER = "@caller"
"""Stands for the calling node's own domain in ``from`` and ``to``."""


class AllowListError(ValueError):
    """The allow-list file is unusable; the message names the file and the entry."""


@dataclass(frozen=True)
class Rule:
    """One ``[[allow]]`` entry."""

    id: str
    callers: tuple[str, ...]
    sources: tuple[str, ...]
    targets: tuple[str, ...]
    activities: tuple[str, ...]

    def admits(self, caller: Identity, activity: str, source: str, target: str) -> bool:
        """True when this rule allows ``caller`` to convert ``source`` -> ``target``."""
        own = own_domain(caller)
        return (
            _any(caller.uri, self.callers)
            and _any(activity, self.activities)
            and _domain(source, self.sources, own)
            and _domain(target, self.targets, own)
        )


def own_domain(caller: Identity) -> str:
    """The caller's own pseudonymisation domain: a node's id, a partner's organisation id."""
    if caller.kind is PeerKind.NODE:
        return caller.node_id
    if caller.kind is PeerKind.PARTNER:
        return caller.org_id
    return ""


def _any(value: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(value, p) for p in patterns)


def _domain(value: str, patterns: Iterable[str], own: str) -> bool:
    for pattern in patterns:
        if pattern == CALLER:
            if own and value == own:
                return True
        elif pattern == GLOBAL_KEY:
            if value == GLOBAL_KEY:
                return True
        elif value != GLOBAL_KEY and fnmatch.fnmatchcase(value, pattern):
            return True
    return False


@dataclass(frozen=True)
class AllowList:
    """The rules in force."""

    rules: tuple[Rule, ...]
    enrol: tuple[str, ...]

    def decide(
        self, caller: Identity, activity: str, pairs: Iterable[tuple[str, str]]
    ) -> list[str]:
        """The ids of the rules that allow every pair; DeniedError naming the first pair refused."""
        used: dict[str, None] = {}
        for source, target in pairs:
            rule = next((r for r in self.rules if r.admits(caller, activity, source, target)), None)
            if rule is None:
                raise DeniedError(
                    f"this transcryptor's policy does not allow {caller.uri} to convert "
                    f"from {quote(source)} to {quote(target)} for activity {quote(activity)}"
                )
            used[rule.id] = None
        return list(used)

    def may_enrol(self, caller: Identity) -> bool:
        """True when ``caller`` may fetch its own domain's factor."""
        return bool(own_domain(caller)) and _any(caller.uri, self.enrol)

    @classmethod
    def parse(cls, doc: dict[str, Any], source: str) -> AllowList:
        """Build from a parsed TOML document; AllowListError names the bad entry."""
        unknown = set(doc) - {"allow", "enrol"}
        if unknown:
            raise AllowListError(f"{source}: unknown key {sorted(unknown)[0]!r}")
        enrol = doc.get("enrol", {})
        if not isinstance(enrol, dict) or set(enrol) - {"callers"}:
            raise AllowListError(f"{source}: [enrol] takes only callers")
        rules = []
        seen: set[str] = set()
        for i, raw in enumerate(doc.get("allow", [])):
            where = f"{source}: allow[{i}]"
            if not isinstance(raw, dict):
                raise AllowListError(f"{where}: must be a table")
            keys = {"id", "callers", "from", "to", "activities"}
            if set(raw) != keys:
                raise AllowListError(f"{where}: needs exactly the keys {', '.join(sorted(keys))}")
            rule_id = raw["id"]
            if not isinstance(rule_id, str) or not rule_id or rule_id in seen:
                raise AllowListError(f"{where}: id must be a non-empty string used once")
            seen.add(rule_id)
            rules.append(
                Rule(
                    rule_id,
                    _patterns(raw["callers"], f"{where}.callers"),
                    _patterns(raw["from"], f"{where}.from"),
                    _patterns(raw["to"], f"{where}.to"),
                    _patterns(raw["activities"], f"{where}.activities"),
                )
            )
        return cls(tuple(rules), _patterns(enrol.get("callers", []), f"{source}: enrol.callers"))


def _patterns(value: object, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise AllowListError(f"{where}: must be a list of non-empty strings")
    return tuple(value)


def load(path: Path) -> AllowList:
    """Read and check the allow-list file."""
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise AllowListError(f"{path}: cannot read: {exc.strerror}") from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise AllowListError(f"{path}: not valid TOML: {exc}") from exc
    return AllowList.parse(doc, str(path))


class AllowListFile:
    """The allow-list, re-read when its file changes; a bad new version is refused at once.

    Unlike the node's signed policy, a broken edit is not kept out silently:
    every call is denied until the file is right again, so a mistake can
    only ever narrow what the transcryptor does.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._stamp = self._stat()
        self._current: AllowList | None = load(path)

    def _stat(self) -> tuple[int, int, int]:
        st = os.stat(self.path)
        return (st.st_ino, st.st_size, st.st_mtime_ns)

    def current(self) -> AllowList:
        """The rules in force; DeniedError while the file is unusable."""
        with self._lock:
            try:
                stamp = self._stat()
                if stamp != self._stamp:
                    self._stamp = stamp
                    self._current = load(self.path)
            except (OSError, AllowListError):
                self._current = None
            if self._current is None:
                raise DeniedError(
                    "this transcryptor's policy file is unusable; every call is denied"
                )
            return self._current
