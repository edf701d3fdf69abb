"""Local authorization without a protocol: a versioned local list, a least-recently-used cache,
and the rules that bind them to the central system's answers.

OCPP 1.6 (§3.5: Local Authorization List, Authorization Cache) and OCPP 2.0.1 (Part 2 C10-C15,
D01/D02) describe the same idea in two vocabularies: the central system keeps a versioned list of
tokens on the charger (SendLocalList Full/Differential, GetLocalListVersion), the charger caches
every verdict it was given, the list beats the cache for the same token, and two switches say
whether a known token may start at once online (LocalPreAuthorize) and whether the list and
cache decide while the central system is unreachable (LocalAuthorizeOffline).

Pure: no I/O, no clock (``now`` is POSIX seconds, passed in). What an entry is (IdTagInfo of
1.6, IdTokenInfo of 2.0.1) belongs to each protocol's edge; the stores only need a ``Verdict``:
a ``status``, ``as_of(now)`` (the status once its validity ended) and ``to_saved()``. Tokens are
found by ``key(token)``, which also rejects a malformed token (ValueError).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable, Generic, Iterable, Mapping, Protocol, Sequence, TypeVar

ACCEPTED = "Accepted"

#: Statuses of a list update (OCPP 1.6 §7 UpdateStatus, 2.0.1 UpdateStatusEnumType).
UPDATE_ACCEPTED = "Accepted"
UPDATE_FAILED = "Failed"
UPDATE_VERSION_MISMATCH = "VersionMismatch"

FULL = "Full"
DIFFERENTIAL = "Differential"

SOURCE_LOCAL_LIST = "local list"
SOURCE_CACHE = "cache"


class Verdict(Protocol):
    status: str

    def as_of(self, now: float) -> "Verdict": ...

    def to_saved(self) -> Any: ...


V = TypeVar("V", bound=Verdict)


def casefold_key(token: str) -> str:
    """Tokens compare without regard to case (1.6 CiString20Type, 2.0.1 IdToken: identifierString)."""
    return token.casefold()


class LocalList(Generic[V]):
    """The list the central system keeps on the charger, with its version (0 while empty)."""

    def __init__(self, from_saved: Callable[[Any], V], saved: Mapping[str, Any] | None = None,
                 key: Callable[[str], str] = casefold_key) -> None:
        self._key = key
        self._entries: dict[str, tuple[str, V]] = {}
        self._version = 0
        if saved:
            for token, info in saved.get("entries", {}).items():
                self._entries[key(token)] = (token, from_saved(info))
            self._version = int(saved.get("version", 0)) if self._entries else 0

    @property
    def version(self) -> int:
        """0 while the list is empty (1.6 §5.10; 2.0.1 D02)."""
        return self._version

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, token: str) -> bool:
        return self._key(token) in self._entries

    def get(self, token: str) -> V | None:
        """The entry as sent by the central system (status not adjusted for expiry)."""
        found = self._entries.get(self._key(token))
        return found[1] if found else None

    def items(self) -> list[tuple[str, V]]:
        """(token as sent, entry) for every entry."""
        return list(self._entries.values())

    def update(self, update_type: str, version: Any, parsed: Sequence[tuple[str, V | None]], *,
               max_length: int) -> str:
        """Apply an update (``parsed``: token and entry, None to delete) and return its status.

        Accepted: the list holds the update and ``version`` (0 if it ended up empty). Failed or
        VersionMismatch: nothing changed. The request is checked first (Failed), then its version
        (VersionMismatch), then the size of the resulting list (Failed).
        """
        if update_type not in (FULL, DIFFERENTIAL):
            return UPDATE_FAILED
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            return UPDATE_FAILED
        try:
            keys = [self._key(token) for token, _ in parsed]
        except ValueError:
            return UPDATE_FAILED
        # 1.6 §5.15 / 2.0.1 D01: every token in one update is unique.
        if len(set(keys)) != len(keys):
            return UPDATE_FAILED
        # A Full update carries the entry of every token (1.6 §7.1; 2.0.1 D01).
        if update_type == FULL and any(info is None for _, info in parsed):
            return UPDATE_FAILED
        # A differential names the version after it, so it must be above the current one
        # (1.6 §6.41, 2.0.1 D01); the central system then sends a Full list.
        if update_type == DIFFERENTIAL and version <= self._version:
            return UPDATE_VERSION_MISMATCH

        updated = {} if update_type == FULL else dict(self._entries)
        for key, (token, info) in zip(keys, parsed):
            if info is None:
                updated.pop(key, None)  # a differential entry without its info deletes the token
            else:
                updated[key] = (token, info)
        if len(updated) > max_length:
            return UPDATE_FAILED

        self._entries = updated
        self._version = version if updated else 0
        return UPDATE_ACCEPTED

    def to_saved(self) -> dict[str, Any]:
        return {"version": self._version,
                "entries": {token: info.to_saved() for token, info in self._entries.values()}}


class AuthorizationCache(Generic[V]):
    """The last verdict of the central system for each token presented, least recently used
    first out when full (1.6 §3.5.1; 2.0.1 C10, AuthCacheCtrlr.Policy LRU)."""

    def __init__(self, from_saved: Callable[[Any], V], capacity: int = 1000, saved: Iterable[Any] | None = None,
                 key: Callable[[str], str] = casefold_key) -> None:
        if capacity < 1:
            raise ValueError(f"cache capacity must be at least 1 (got {capacity})")
        self.capacity = capacity
        self._key = key
        self._entries: OrderedDict[str, tuple[str, V]] = OrderedDict()
        for token, info in saved or ():
            self._store(token, from_saved(info))

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, token: str) -> bool:
        return self._key(token) in self._entries

    def _store(self, token: str, info: V) -> None:
        key = self._key(token)
        self._entries[key] = (token, info)
        self._entries.move_to_end(key)
        while len(self._entries) > self.capacity:
            self._entries.popitem(last=False)

    def remember(self, token: str, info: V) -> bool:
        """Store (or replace) the entry, as most recently used; the least recently used one
        makes room when full. True when the stored content changed."""
        before = self._entries.get(self._key(token))
        self._store(token, info)
        return before != (token, info)

    def get(self, token: str, now: float) -> V | None:
        """The entry with its status at ``now`` (Expired once its validity ended), marked as most
        recently used; None when not cached."""
        key = self._key(token)
        found = self._entries.get(key)
        if found is None:
            return None
        self._entries.move_to_end(key)
        return found[1].as_of(now)

    def stored(self, token: str) -> V | None:
        """The entry as stored (status not adjusted, recency unchanged)."""
        found = self._entries.get(self._key(token))
        return found[1] if found else None

    def items(self) -> list[tuple[str, V]]:
        """(token, entry), least recently used first."""
        return list(self._entries.values())

    def forget(self, token: str) -> bool:
        return self._entries.pop(self._key(token), None) is not None

    def clear(self) -> bool:
        """ClearCache (1.6 §5.4; 2.0.1 C11). True when something was removed."""
        had_entries = bool(self._entries)
        self._entries.clear()
        return had_entries

    def to_saved(self) -> list[list[Any]]:
        """[[token, entry], ...], least recently used first."""
        return [[token, info.to_saved()] for token, info in self._entries.values()]


@dataclass(frozen=True)
class Decision:
    """What to do with a presented token before (or instead of) asking the central system."""

    info: Any
    """The local verdict, status already Expired if its validity ended; None: no local verdict."""
    source: str | None
    """Where ``info`` came from: "local list", "cache", or None."""
    ask_central_system: bool
    """True: ask the central system (Authorize) and decide on its answer."""

    @property
    def accepted(self) -> bool:
        """Authorized locally: charging may start without asking the central system."""
        return self.info is not None and self.info.status == ACCEPTED


ASK_CENTRAL_SYSTEM = Decision(None, None, True)
NOTHING_KNOWN = Decision(None, None, False)


class LocalAuthorization(Generic[V]):
    """The local list and the cache with the rules that bind them (1.6 §3.5.3; 2.0.1 C12-C15)."""

    def __init__(self, local_list: LocalList[V], cache: AuthorizationCache[V]) -> None:
        self.local_list = local_list
        self.cache = cache

    def lookup(self, token: str, now: float, *, list_enabled: bool, cache_enabled: bool) -> Decision:
        """The local entry for ``token`` (never asks the central system). The list has priority
        over the cache for the same token; a disabled list or cache is not consulted."""
        if list_enabled:
            info = self.local_list.get(token)
            if info is not None:
                return Decision(info.as_of(now), SOURCE_LOCAL_LIST, False)
        if cache_enabled:
            info = self.cache.get(token, now)
            if info is not None:
                return Decision(info, SOURCE_CACHE, False)
        return NOTHING_KNOWN

    def decide(self, token: str, now: float, *, online: bool, list_enabled: bool, cache_enabled: bool,
               pre_authorize: bool, authorize_offline: bool) -> Decision:
        """How to authorize ``token`` presented at ``now``.

        Online: with LocalPreAuthorize, an Accepted, unexpired entry authorizes at once (1.6
        §3.5.1/§3.5.2, OCTT TC_007/TC_008; 2.0.1 C12, C14); anything else asks the central
        system. Offline: with LocalAuthorizeOffline the entry decides, refusing with its status
        when it is not Accepted or has expired (2.0.1 C13, C15); an unknown token, or local
        authorization switched off, gives ``info`` None: the caller then applies its rule for
        unknown tokens offline (1.6 AllowOfflineTxForUnknownId, 2.0.1 OfflineTxForUnknownIdEnabled).
        """
        if online:
            if pre_authorize:
                known = self.lookup(token, now, list_enabled=list_enabled, cache_enabled=cache_enabled)
                if known.accepted:
                    return known
            return ASK_CENTRAL_SYSTEM
        if not authorize_offline:
            return NOTHING_KNOWN
        return self.lookup(token, now, list_enabled=list_enabled, cache_enabled=cache_enabled)

    def learn(self, token: str, info: V, *, list_enabled: bool, cache_enabled: bool) -> bool:
        """Take in a verdict of the central system. True when the cache changed and should be saved.

        A token in the (enabled) list is not cached (1.6 §3.5.3; 2.0.1 C14), and the list
        itself changes only by SendLocalList. A disabled cache stores nothing.
        """
        if not cache_enabled:
            return False
        if list_enabled and token in self.local_list:
            return False
        return self.cache.remember(token, info)
