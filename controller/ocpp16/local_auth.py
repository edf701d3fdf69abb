"""Local authorization: the Local Authorization List and the Authorization Cache (OCPP 1.6 §3.5).

The 1.6 vocabulary (idTag, IdTagInfo, AuthorizationData) over the protocol-neutral stores and
rules of ``evcp.core.local_auth``, which OCPP 2.0.1 shares. Pure: no I/O, no clock (``now`` is
POSIX seconds, passed in), no asyncio. It answers three questions for the OCPP adapter:

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

from dataclasses import dataclass, replace
from typing import Any, Iterable, Mapping

from evcp.core.local_auth import (  # noqa: F401 - the 1.6 names of the shared rules
    ASK_CENTRAL_SYSTEM,
    DIFFERENTIAL,
    FULL,
    NOTHING_KNOWN,
    SOURCE_CACHE,
    SOURCE_LOCAL_LIST,
    UPDATE_ACCEPTED,
    UPDATE_FAILED,
    UPDATE_VERSION_MISMATCH,
    Decision,
    LocalList,
)
from evcp.core.local_auth import AuthorizationCache as SharedCache
from evcp.core.local_auth import LocalAuthorization as SharedLocalAuthorization
from evcp.core.model import AuthStatus
from evcp.timestamps import parse_timestamp, timestamp

ACCEPTED = AuthStatus.ACCEPTED.value
EXPIRED = AuthStatus.EXPIRED.value

#: IdToken is a CiString20Type (OCPP 1.6 §7, IdToken).
ID_TAG_MAX_LENGTH = 20


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


def _id_tag_key(id_tag: Any) -> str:
    return _key(_check_id_tag(id_tag))


class LocalAuthList(LocalList[IdTagInfo]):
    """The Local Authorization List (OCPP 1.6 §3.5.2), kept in step with the central system
    by SendLocalList (§5.15) and reported by GetLocalListVersion (§5.10)."""

    def __init__(self, saved: Mapping[str, Any] | None = None) -> None:
        try:
            super().__init__(IdTagInfo.from_saved, saved, key=_id_tag_key)
        except (AttributeError, KeyError, TypeError, ValueError) as error:
            raise ValueError(f"saved local authorization list is damaged: {error}") from None

    def apply(self, update_type: str, version: int, entries: Iterable[Mapping[str, Any]] | None, *,
              max_length: int, max_send_length: int) -> str:
        """Apply a SendLocalList.req (OCPP 1.6 §5.15) and return SendLocalList.conf's status.

        Accepted: the list now holds the update and ``version`` (0 if it ended up empty; §5.10,
        TC_042_2). Failed or VersionMismatch: nothing changed at all.
        """
        try:
            parsed = [_entry(raw) for raw in entries or ()]
        except ValueError:
            return UPDATE_FAILED
        # SendLocalListMaxLength: most entries one request may carry (§9.2).
        if len(parsed) > max_send_length:
            return UPDATE_FAILED
        # LocalAuthListMaxLength: most entries the list may hold (§9.2).
        return self.update(update_type, version, parsed, max_length=max_length)


class AuthorizationCache(SharedCache[IdTagInfo]):
    """The Authorization Cache (OCPP 1.6 §3.5.1): the last idTagInfo the central system gave
    for each idTag presented, least recently used first out when full."""

    def __init__(self, capacity: int = 1000, saved: Iterable[Any] | None = None) -> None:
        if capacity < 1:
            raise ValueError(f"cache capacity must be at least 1 (got {capacity})")
        try:
            super().__init__(IdTagInfo.from_saved, capacity, saved, key=_id_tag_key)
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"saved authorization cache is damaged: {error}") from None

    def remember(self, id_tag: str, info: IdTagInfo) -> bool:
        """Store (or replace) the entry for ``id_tag``, as most recently used; the least recently
        used entry makes room when full. True when the stored content changed."""
        _check_id_tag(id_tag)
        return super().remember(id_tag, info)


class LocalAuthorization(SharedLocalAuthorization[IdTagInfo]):
    """The Local Authorization List and the Authorization Cache with the rules that bind them
    (OCPP 1.6 §3.5.3) and the configuration keys that govern their use (§9.1, §9.2)."""

    local_list: LocalAuthList
    cache: AuthorizationCache

    def list_version(self, *, list_enabled: bool) -> int:
        """GetLocalListVersion.conf listVersion (§5.10): -1 while the list is switched off
        (OCTT TC_042_1), 0 while it is empty (TC_042_2)."""
        return self.local_list.version if list_enabled else -1
