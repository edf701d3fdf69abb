"""Local authorization: the Local Authorization List and the Authorization Cache (OCPP 1.6 §3.5).

A pure core: no I/O, no clock (``now`` is POSIX seconds, passed in), no asyncio. It answers
three questions for the OCPP adapter:

* what does the charger know locally about an idTag, and may it act on that without asking the
  central system (``LocalAuthorization.decide``, keys LocalPreAuthorize / LocalAuthorizeOffline);
* how does a SendLocalList.req change the list, and what does SendLocalList.conf say
  (``LocalAuthList.apply``, §5.15) and GetLocalListVersion.conf report (§5.10);
* what goes into the cache after a central-system answer (``LocalAuthorization.learn``, §3.5.1)
  and what ClearCache removes (§5.4).

Persistence belongs to the caller: every store has ``to_saved()`` (JSON-able) and takes that back
in its constructor; calls that change a store return True (or "Accepted") so the caller knows
when to write it.

IdTags are compared without regard to case: an IdToken is a CiString20Type (OCPP 1.6 §7, IdToken).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import Any, Iterable, Mapping

from evcp.core.model import AuthStatus
from evcp.timestamps import parse_timestamp, timestamp

ACCEPTED = AuthStatus.ACCEPTED.value
EXPIRED = AuthStatus.EXPIRED.value

#: IdToken is a CiString20Type (OCPP 1.6 §7, IdToken).
ID_TAG_MAX_LENGTH = 20

#: SendLocalList.conf statuses (OCPP 1.6 §7, UpdateStatus); NotSupported is the caller's to send.
UPDATE_ACCEPTED = "Accepted"
UPDATE_FAILED = "Failed"
UPDATE_VERSION_MISMATCH = "VersionMismatch"

FULL = "Full"
DIFFERENTIAL = "Differential"

SOURCE_LOCAL_LIST = "local list"
SOURCE_CACHE = "cache"


def _key(id_tag: str) -> str:
    """IdTags are case-insensitive (CiString20Type, OCPP 1.6 §7)."""
    return id_tag.casefold()


def _check_id_tag(id_tag: Any, what: str = "idTag") -> str:
    if not isinstance(id_tag, str) or not id_tag or len(id_tag) > ID_TAG_MAX_LENGTH:
        raise ValueError(f"{what} must be a text of 1 to {ID_TAG_MAX_LENGTH} characters (got {id_tag!r})")
    return id_tag


def _field(payload: Mapping[str, Any], snake: str, camel: str) -> Any:
    return payload[snake] if snake in payload else payload.get(camel)


@dataclass(frozen=True)
class IdTagInfo:
    """What the central system said about an idTag (OCPP 1.6 §7, IdTagInfo)."""

    status: str
    """An AuthorizationStatus (§7.2): Accepted, Blocked, Expired, Invalid or ConcurrentTx."""
    expiry: float | None = None
    """POSIX seconds from which the idTag is no longer valid; None: no end."""
    parent_id_tag: str | None = None

    def __post_init__(self) -> None:
        try:
            status = AuthStatus(self.status).value
        except ValueError:
            raise ValueError(f"unknown authorization status {self.status!r}") from None
        object.__setattr__(self, "status", status)
        if self.expiry is not None:
            if isinstance(self.expiry, bool) or not isinstance(self.expiry, (int, float)):
                raise ValueError(f"expiry must be POSIX seconds (got {self.expiry!r})")
            object.__setattr__(self, "expiry", float(self.expiry))
        if self.parent_id_tag is not None:
            _check_id_tag(self.parent_id_tag, "parentIdTag")

    @classmethod
    def from_ocpp(cls, payload: Mapping[str, Any]) -> "IdTagInfo":
        """From an idTagInfo object, snake_case (as the ocpp library gives it) or camelCase.

        Raises ValueError on a missing or unknown status, a bad expiryDate or parentIdTag.
        """
        if not isinstance(payload, Mapping):
            raise ValueError(f"idTagInfo must be an object (got {payload!r})")
        status = payload.get("status")
        if status is None:
            raise ValueError("idTagInfo without status")
        expiry_text = _field(payload, "expiry_date", "expiryDate")
        return cls(status=status,
                   expiry=None if expiry_text is None else parse_timestamp(expiry_text),
                   parent_id_tag=_field(payload, "parent_id_tag", "parentIdTag"))

    def to_ocpp(self) -> dict[str, Any]:
        """As an idTagInfo object in the ocpp library's snake_case; absent fields left out."""
        payload: dict[str, Any] = {"status": self.status}
        if self.expiry is not None:
            payload["expiry_date"] = timestamp(self.expiry)
        if self.parent_id_tag is not None:
            payload["parent_id_tag"] = self.parent_id_tag
        return payload

    def effective_status(self, now: float) -> str:
        """The status, or Expired once the expiry date is reached (OCPP 1.6 §3.5.1: an entry
        whose validity ended counts as expired; §3.5.2 the same for list entries)."""
        if self.expiry is not None and now >= self.expiry:
            return EXPIRED
        return self.status

    def as_of(self, now: float) -> "IdTagInfo":
        """This info with its effective status at ``now``."""
        status = self.effective_status(now)
        return self if status == self.status else replace(self, status=status)

    def to_saved(self) -> dict[str, Any]:
        saved: dict[str, Any] = {"status": self.status}
        if self.expiry is not None:
            saved["expiry"] = self.expiry
        if self.parent_id_tag is not None:
            saved["parent_id_tag"] = self.parent_id_tag
        return saved

    @classmethod
    def from_saved(cls, saved: Mapping[str, Any]) -> "IdTagInfo":
        return cls(saved["status"], saved.get("expiry"), saved.get("parent_id_tag"))


def _entry(raw: Any) -> tuple[str, IdTagInfo | None]:
    """One AuthorizationData (OCPP 1.6 §7.1): idTag and an optional idTagInfo."""
    if not isinstance(raw, Mapping):
        raise ValueError(f"an AuthorizationData must be an object (got {raw!r})")
    id_tag = _check_id_tag(_field(raw, "id_tag", "idTag"))
    info = _field(raw, "id_tag_info", "idTagInfo")
    return id_tag, None if info is None else IdTagInfo.from_ocpp(info)


class LocalAuthList:
    """The Local Authorization List (OCPP 1.6 §3.5.2), kept in step with the central system
    by SendLocalList (§5.15) and reported by GetLocalListVersion (§5.10)."""

    def __init__(self, saved: Mapping[str, Any] | None = None) -> None:
        self._entries: dict[str, tuple[str, IdTagInfo]] = {}
        self._version = 0
        if saved:
            try:
                for id_tag, info in saved.get("entries", {}).items():
                    self._entries[_key(id_tag)] = (_check_id_tag(id_tag), IdTagInfo.from_saved(info))
                self._version = int(saved.get("version", 0)) if self._entries else 0
            except (AttributeError, KeyError, TypeError, ValueError) as error:
                raise ValueError(f"saved local authorization list is damaged: {error}") from None

    @property
    def version(self) -> int:
        """The version GetLocalListVersion.conf reports: 0 while the list is empty (§5.10)."""
        return self._version

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, id_tag: str) -> bool:
        return _key(id_tag) in self._entries

    def get(self, id_tag: str) -> IdTagInfo | None:
        """The entry as sent by the central system (status not adjusted for expiry)."""
        found = self._entries.get(_key(id_tag))
        return found[1] if found else None

    def items(self) -> list[tuple[str, IdTagInfo]]:
        """(idTag as sent, info) for every entry."""
        return list(self._entries.values())

    def apply(self, update_type: str, version: int, entries: Iterable[Mapping[str, Any]] | None, *,
              max_length: int, max_send_length: int) -> str:
        """Apply a SendLocalList.req (OCPP 1.6 §5.15) and return SendLocalList.conf's status.

        Accepted: the list now holds the update and ``version`` (0 if it ended up empty).
        Failed or VersionMismatch: nothing changed at all. The request is checked first
        (Failed), then its version (VersionMismatch), then the size of the resulting list (Failed).
        """
        try:
            parsed = [_entry(raw) for raw in entries or ()]
        except ValueError:
            return UPDATE_FAILED
        if update_type not in (FULL, DIFFERENTIAL):
            return UPDATE_FAILED
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            return UPDATE_FAILED
        # SendLocalListMaxLength: most entries one request may carry (§9.2).
        if len(parsed) > max_send_length:
            return UPDATE_FAILED
        # §5.15: all idTags in the list MUST be unique.
        if len({_key(id_tag) for id_tag, _ in parsed}) != len(parsed):
            return UPDATE_FAILED
        # §7.1 AuthorizationData: idTagInfo is required in a Full update.
        if update_type == FULL and any(info is None for _, info in parsed):
            return UPDATE_FAILED
        # §7 UpdateStatus VersionMismatch: a differential's version is not above the current one
        # (§6.41: it names the version after the update; §5.15: the central system then sends Full).
        if update_type == DIFFERENTIAL and version <= self._version:
            return UPDATE_VERSION_MISMATCH

        updated = {} if update_type == FULL else dict(self._entries)
        for id_tag, info in parsed:
            if info is None:
                # §7.1 AuthorizationData: in a differential, an entry without idTagInfo is deleted.
                updated.pop(_key(id_tag), None)
            else:
                updated[_key(id_tag)] = (id_tag, info)
        # LocalAuthListMaxLength: most entries the list may hold (§9.2).
        if len(updated) > max_length:
            return UPDATE_FAILED

        self._entries = updated
        # §5.10: version 0 means the list is empty, whatever version the update carried (TC_042_2).
        self._version = version if updated else 0
        return UPDATE_ACCEPTED

    def to_saved(self) -> dict[str, Any]:
        return {"version": self._version,
                "entries": {id_tag: info.to_saved() for id_tag, info in self._entries.values()}}


class AuthorizationCache:
    """The Authorization Cache (OCPP 1.6 §3.5.1): the last idTagInfo the central system gave
    for each idTag presented, least recently used first out when full."""

    def __init__(self, capacity: int = 1000, saved: Iterable[Any] | None = None) -> None:
        if capacity < 1:
            raise ValueError(f"cache capacity must be at least 1 (got {capacity})")
        self.capacity = capacity
        self._entries: OrderedDict[str, tuple[str, IdTagInfo]] = OrderedDict()
        try:
            for id_tag, info in saved or ():
                self._store(_check_id_tag(id_tag), IdTagInfo.from_saved(info))
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"saved authorization cache is damaged: {error}") from None

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, id_tag: str) -> bool:
        return _key(id_tag) in self._entries

    def _store(self, id_tag: str, info: IdTagInfo) -> None:
        key = _key(id_tag)
        self._entries[key] = (id_tag, info)
        self._entries.move_to_end(key)
        while len(self._entries) > self.capacity:
            self._entries.popitem(last=False)

    def remember(self, id_tag: str, info: IdTagInfo) -> bool:
        """Store (or replace) the entry for ``id_tag``, as most recently used; the least recently
        used entry makes room when full. True when the stored content changed."""
        _check_id_tag(id_tag)
        before = self._entries.get(_key(id_tag))
        self._store(id_tag, info)
        return before != (id_tag, info)

    def get(self, id_tag: str, now: float) -> IdTagInfo | None:
        """The entry with its effective status at ``now`` (§3.5.1: Expired once its validity
        ended), marked as most recently used; None when not cached."""
        key = _key(id_tag)
        found = self._entries.get(key)
        if found is None:
            return None
        self._entries.move_to_end(key)
        return found[1].as_of(now)

    def clear(self) -> bool:
        """ClearCache (OCPP 1.6 §5.4). True when something was removed."""
        had_entries = bool(self._entries)
        self._entries.clear()
        return had_entries

    def to_saved(self) -> list[list[Any]]:
        """[[idTag, info], ...], least recently used first."""
        return [[id_tag, info.to_saved()] for id_tag, info in self._entries.values()]


@dataclass(frozen=True)
class Decision:
    """What to do with a presented idTag before (or instead of) asking the central system."""

    info: IdTagInfo | None
    """The local verdict, status already Expired if its validity ended; None: no local verdict."""
    source: str | None
    """Where ``info`` came from: "local list", "cache", or None."""
    ask_central_system: bool
    """True: send Authorize.req and decide on its answer."""

    @property
    def accepted(self) -> bool:
        """Authorized locally: charging may start without an Authorize.req."""
        return self.info is not None and self.info.status == ACCEPTED


ASK_CENTRAL_SYSTEM = Decision(None, None, True)
NOTHING_KNOWN = Decision(None, None, False)


class LocalAuthorization:
    """The Local Authorization List and the Authorization Cache with the rules that bind them
    (OCPP 1.6 §3.5.3) and the configuration keys that govern their use (§9.1, §9.2)."""

    def __init__(self, local_list: LocalAuthList, cache: AuthorizationCache) -> None:
        self.local_list = local_list
        self.cache = cache

    def lookup(self, id_tag: str, now: float, *, list_enabled: bool, cache_enabled: bool) -> Decision:
        """The local entry for ``id_tag`` (never asks the central system).

        §3.5.3: the list has priority over the cache for the same idTag; a disabled list or cache
        (LocalAuthListEnabled, AuthorizationCacheEnabled) is not consulted.
        """
        if list_enabled:
            info = self.local_list.get(id_tag)
            if info is not None:
                return Decision(info.as_of(now), SOURCE_LOCAL_LIST, False)
        if cache_enabled:
            info = self.cache.get(id_tag, now)
            if info is not None:
                return Decision(info, SOURCE_CACHE, False)
        return NOTHING_KNOWN

    def decide(self, id_tag: str, now: float, *, online: bool, list_enabled: bool, cache_enabled: bool,
               pre_authorize: bool, authorize_offline: bool) -> Decision:
        """How to authorize ``id_tag`` presented at ``now``.

        Online: with LocalPreAuthorize, an Accepted, unexpired entry authorizes at once (§3.5.1,
        §3.5.2; OCTT TC_007, TC_008); anything else asks the central system.
        Offline: with LocalAuthorizeOffline, the entry decides, refusing with its status when it is
        not Accepted or has expired; an unknown idTag, or local authorization switched off, gives
        ``info`` None: the caller then applies AllowOfflineTxForUnknownId (§3.5.4).
        """
        if online:
            if pre_authorize:
                known = self.lookup(id_tag, now, list_enabled=list_enabled, cache_enabled=cache_enabled)
                if known.accepted:
                    return known
            return ASK_CENTRAL_SYSTEM
        if not authorize_offline:
            return NOTHING_KNOWN
        return self.lookup(id_tag, now, list_enabled=list_enabled, cache_enabled=cache_enabled)

    def learn(self, id_tag: str, info: IdTagInfo, *, list_enabled: bool, cache_enabled: bool) -> bool:
        """Take in an idTagInfo from the central system (Authorize.conf, StartTransaction.conf,
        StopTransaction.conf; §3.5.1). True when the cache changed and should be saved.

        §3.5.3: an idTag in the (enabled) list is not added to the cache, and the list itself is
        only ever changed by SendLocalList. A disabled cache stores nothing.
        """
        if not cache_enabled:
            return False
        if list_enabled and id_tag in self.local_list:
            return False
        return self.cache.remember(id_tag, info)

    def list_version(self, *, list_enabled: bool) -> int:
        """GetLocalListVersion.conf listVersion (§5.10): -1 while the list is switched off
        (OCTT TC_042_1), 0 while it is empty (TC_042_2)."""
        return self.local_list.version if list_enabled else -1
