"""OCPP 2.0.1 local authorization: the Local Authorization List and the Authorization Cache.

The 2.0.1 edge of ``evcp.core.local_auth`` (the stores and rules shared with OCPP 1.6):

* IdTokenType / IdTokenInfoType / AuthorizationData are read here (snake_case as the ``ocpp``
  library gives a CSMS request, camelCase as a CALLRESULT arrives); a token is known by its type
  and value together (Part 2 C: the same value with another IdTokenEnumType is another token);
* SendLocalList (D01) and GetLocalListVersion (D02), with LocalAuthListCtrlr.Enabled,
  ItemsPerMessage, BytesPerMessage and Entries (its maxLimit is the list's capacity);
* the cache (C10): AuthorizeResponse and TransactionEventResponse idTokenInfo go in (except tokens
  on the list), cacheExpiryDateTime makes an entry Expired, AuthCacheCtrlr.LifeTime drops an entry
  not used for that long, ClearCache (C11) is Accepted while AuthCacheCtrlr.Enabled is true;
* the decision before Authorize: LocalPreAuthorize (C12 cache, C14 list), LocalAuthorizeOffline
  (C13, C15), AuthCacheCtrlr.DisablePostAuthorize (C12: a cached token that is not Accepted is
  refused without asking). OfflineTxForUnknownIdEnabled is the core's rule for a token no local
  store knows while offline (``settings_from``).

List and cache are stored documents (``ocpp201-local-list``, ``ocpp201-authorization-cache``),
written when they change; a SendLocalList that cannot be stored leaves the list as it was and
answers Failed. No I/O besides the state store; ``now`` is passed in.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Iterable, Mapping

from evcp.core.local_auth import (
    ASK_CENTRAL_SYSTEM,
    NOTHING_KNOWN,
    SOURCE_CACHE,
    UPDATE_ACCEPTED,
    UPDATE_FAILED,
    AuthorizationCache,
    Decision,
    LocalAuthorization,
    LocalList,
)
from evcp.ocpp201.device_model import LOCAL_LIST_ENTRIES
from evcp.storage import StoreError
from evcp.timestamps import parse_timestamp, timestamp

if TYPE_CHECKING:
    from evcp.ocpp201.device_model import DeviceModel
    from evcp.storage import StateStore

log = logging.getLogger("evcp.ocpp")

LOCAL_LIST = "ocpp201-local-list"
AUTHORIZATION_CACHE = "ocpp201-authorization-cache"
"""Names of the stored documents (apart from the 1.6 ones: 1.6 idTags carry no type)."""
CACHE_CAPACITY = 1000
"""Most entries the cache holds; the list's is LocalAuthListCtrlr.Entries maxLimit."""

TOKEN_TYPES = ("Central", "eMAID", "ISO14443", "ISO15693", "KeyCode", "Local", "MacAddress", "NoAuthorization")
"""IdTokenEnumType."""
ID_TOKEN_MAX_LENGTH = 36
"""IdTokenType.idToken is an identifierString of at most 36 characters."""
STATUSES = ("Accepted", "Blocked", "ConcurrentTx", "Expired", "Invalid", "NoCredit", "NotAllowedTypeEVSE",
            "NotAtThisLocation", "NotAtThisTime", "Unknown")
"""AuthorizationStatusEnumType."""
EXPIRED = "Expired"


def _field(payload: Mapping[str, Any], snake: str, camel: str) -> Any:
    return payload[snake] if snake in payload else payload.get(camel)


def token_name(id_token: Mapping[str, Any]) -> str:
    """``TYPE:value`` of an IdTokenType: the name under which the list and the cache keep it.
    Raises ValueError for an unknown type or a value that is not 1 to 36 characters."""
    if not isinstance(id_token, Mapping):
        raise ValueError(f"an idToken must be an object (got {id_token!r})")
    kind, value = id_token.get("type"), _field(id_token, "id_token", "idToken")
    if kind not in TOKEN_TYPES:
        raise ValueError(f"unknown idToken type {kind!r}")
    if kind == "NoAuthorization":
        raise ValueError("a NoAuthorization token needs no authorization and is never listed or cached")
    if not isinstance(value, str) or not 1 <= len(value) <= ID_TOKEN_MAX_LENGTH:
        raise ValueError(f"idToken must be a text of 1 to {ID_TOKEN_MAX_LENGTH} characters (got {value!r})")
    return f"{kind}:{value}"


def _name_key(name: str) -> str:
    kind, _, value = name.partition(":")
    token_name({"type": kind, "idToken": value})
    return f"{kind}:{value.casefold()}"  # idToken values compare without regard to case


@dataclass(frozen=True)
class TokenInfo:
    """What the CSMS said about an IdToken (IdTokenInfoType, the fields this station acts on)."""

    status: str
    """An AuthorizationStatusEnumType value."""
    cache_expiry: float | None = None
    """cacheExpiryDateTime in POSIX seconds: from then on the token counts as Expired."""
    group: dict[str, str] | None = None
    """groupIdToken as {"idToken", "type"}."""
    used_at: float | None = None
    """Cache only: when the token was last used (AuthCacheCtrlr.LifeTime counts from here)."""

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"unknown authorization status {self.status!r}")
        for name in ("cache_expiry", "used_at"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
                raise ValueError(f"{name} must be POSIX seconds (got {value!r})")

    @classmethod
    def from_ocpp(cls, payload: Mapping[str, Any]) -> "TokenInfo":
        """From an IdTokenInfoType, snake_case or camelCase; ValueError when it is malformed."""
        if not isinstance(payload, Mapping):
            raise ValueError(f"idTokenInfo must be an object (got {payload!r})")
        expiry = _field(payload, "cache_expiry_date_time", "cacheExpiryDateTime")
        group = _field(payload, "group_id_token", "groupIdToken")
        if group is not None:
            kind, _, value = token_name(group).partition(":")
            group = {"idToken": value, "type": kind}
        return cls(payload.get("status"), None if expiry is None else parse_timestamp(expiry), group)

    @property
    def group_id(self) -> str | None:
        return self.group["idToken"] if self.group else None

    def as_of(self, now: float) -> "TokenInfo":
        """Expired once cacheExpiryDateTime is reached (C10: "the token must be considered invalid")."""
        if self.cache_expiry is not None and now >= self.cache_expiry and self.status != EXPIRED:
            return replace(self, status=EXPIRED)
        return self

    def to_saved(self) -> dict[str, Any]:
        saved: dict[str, Any] = {"status": self.status}
        if self.cache_expiry is not None:
            saved["cacheExpiryDateTime"] = timestamp(self.cache_expiry)
        if self.group is not None:
            saved["groupIdToken"] = self.group
        if self.used_at is not None:
            saved["usedAt"] = self.used_at
        return saved

    @classmethod
    def from_saved(cls, saved: Mapping[str, Any]) -> "TokenInfo":
        info = cls.from_ocpp(saved)
        return replace(info, used_at=saved.get("usedAt"))


def authorization_data(raw: Any) -> tuple[str, TokenInfo | None]:
    """One AuthorizationData of a SendLocalListRequest: token name and info (None: delete)."""
    if not isinstance(raw, Mapping):
        raise ValueError(f"an AuthorizationData must be an object (got {raw!r})")
    name = token_name(_field(raw, "id_token", "idToken"))
    info = _field(raw, "id_token_info", "idTokenInfo")
    return name, None if info is None else TokenInfo.from_ocpp(info)


class StationAuthorization:
    """The list, the cache and the device-model variables that govern them."""

    def __init__(self, device_model: "DeviceModel", store: "StateStore | None" = None) -> None:
        self.device_model = device_model
        self._store = store
        self.local = LocalAuthorization(self._load_list(), self._load_cache())
        self._report_sizes()

    # ----------------------------------------------------------------- the variables

    def _flag(self, component: str, variable: str) -> bool:
        return self.device_model.flag(component, variable)

    @property
    def list_enabled(self) -> bool:
        return self._flag("LocalAuthListCtrlr", "Enabled")

    @property
    def cache_enabled(self) -> bool:
        return self._flag("AuthCacheCtrlr", "Enabled")

    # ----------------------------------------------------------------- deciding

    def decide(self, id_token: Mapping[str, Any], now: float, *, online: bool) -> Decision:
        """How to authorize ``id_token`` presented at ``now`` (see the module's rules)."""
        try:
            name = token_name(id_token)
        except ValueError:  # NoAuthorization, or nothing a list could hold
            return ASK_CENTRAL_SYSTEM if online else NOTHING_KNOWN
        self._drop_unused(now)
        lists, caches = self.list_enabled, self.cache_enabled
        pre_authorize = self._flag("AuthCtrlr", "LocalPreAuthorize")
        decision = self.local.decide(name, now, online=online, list_enabled=lists, cache_enabled=caches,
                                     pre_authorize=pre_authorize,
                                     authorize_offline=self._flag("AuthCtrlr", "LocalAuthorizeOffline"))
        known = decision if decision.info is not None else self.local.lookup(
            name, now, list_enabled=lists, cache_enabled=caches)
        if online and decision.ask_central_system and pre_authorize and known.source == SOURCE_CACHE \
                and not known.accepted and self._flag("AuthCacheCtrlr", "DisablePostAuthorize"):
            decision = known  # C12: refused from the cache, no AuthorizeRequest
        elif not online and decision.info is None and known.info is not None and not known.accepted:
            decision = known  # a token the list or cache knows as not Accepted never starts offline
        if decision.source == SOURCE_CACHE:
            self._touch(name, now)
        return decision

    def _drop_unused(self, now: float) -> None:
        """AuthCacheCtrlr.LifeTime: an entry not used for that long leaves the cache (C10)."""
        lifetime = self.device_model.number("AuthCacheCtrlr", "LifeTime")
        if lifetime <= 0:
            return
        cache = self.local.cache
        stale = [name for name, info in cache.items() if info.used_at is not None and now - info.used_at >= lifetime]
        for name in stale:
            cache.forget(name)
        if stale:
            log.info("authorization cache: %d entries unused for %ss dropped (AuthCacheCtrlr.LifeTime)",
                     len(stale), lifetime)
            self._save_cache()

    def _touch(self, name: str, now: float) -> None:
        info = self.local.cache.stored(name)
        if info is not None and self.local.cache.remember(name, replace(info, used_at=now)):
            self._save_cache()

    def learn(self, id_token: Mapping[str, Any], id_token_info: Mapping[str, Any], now: float) -> None:
        """An idTokenInfo of an AuthorizeResponse or TransactionEventResponse (C10)."""
        try:
            name, info = token_name(id_token), TokenInfo.from_ocpp(id_token_info)
        except ValueError as error:
            log.debug("not cached: %s", error)
            return
        if self.local.learn(name, replace(info, used_at=now), list_enabled=self.list_enabled,
                            cache_enabled=self.cache_enabled):
            self._save_cache()

    # ----------------------------------------------------------------- CSMS requests

    def clear_cache(self) -> str:
        """ClearCache (C11): Rejected while AuthCacheCtrlr.Enabled is false or the emptied cache
        cannot be stored; the local list is never touched."""
        if not self.cache_enabled:
            return "Rejected"
        saved = self.local.cache.to_saved()
        if self.local.cache.clear() and not self._save_cache():
            self.local.cache = AuthorizationCache(TokenInfo.from_saved, CACHE_CAPACITY, saved, key=_name_key)
            return "Rejected"
        log.info("ClearCache: authorization cache emptied")
        return "Accepted"

    def list_version(self) -> int:
        """GetLocalListVersionResponse versionNumber (D02): 0 while the list is empty or disabled."""
        return self.local.local_list.version if self.list_enabled else 0

    def send_local_list(self, version: int, update_type: str, entries: Iterable[Any] | None) -> str:
        """SendLocalList (D01): Accepted, Failed (disabled, malformed, too many items or bytes for
        one message, list full, not storable) or VersionMismatch; nothing changes unless Accepted."""
        entries = list(entries or ())
        status = self._apply(version, update_type, entries)
        log.info("SendLocalList %s version %s (%d entries): %s; the list holds %d", update_type, version,
                 len(entries), status, len(self.local.local_list))
        return status

    def _apply(self, version: int, update_type: str, entries: list) -> str:
        if not self.list_enabled:
            return UPDATE_FAILED
        model = self.device_model
        if len(entries) > model.number("LocalAuthListCtrlr", "ItemsPerMessage"):
            return UPDATE_FAILED
        if len(json.dumps(entries, separators=(",", ":"))) > model.number("LocalAuthListCtrlr", "BytesPerMessage"):
            return UPDATE_FAILED
        try:
            parsed = [authorization_data(raw) for raw in entries]
        except ValueError as error:
            log.warning("SendLocalList refused: %s", error)
            return UPDATE_FAILED
        local_list = self.local.local_list
        before = local_list.to_saved()
        status = local_list.update(update_type, version, parsed, max_length=LOCAL_LIST_ENTRIES)
        if status == UPDATE_ACCEPTED and not self._save(LOCAL_LIST, local_list.to_saved()):
            self.local.local_list = self._list_from(before)
            return UPDATE_FAILED
        return status

    # ----------------------------------------------------------------- storage

    @staticmethod
    def _list_from(saved: Any) -> LocalList[TokenInfo]:
        return LocalList(TokenInfo.from_saved, saved, key=_name_key)

    def _load_list(self) -> LocalList[TokenInfo]:
        try:
            return self._list_from(self._load(LOCAL_LIST))
        except (AttributeError, KeyError, TypeError, ValueError) as error:
            log.error("stored OCPP 2.0.1 local authorization list unreadable (%s); starting with an empty one", error)
            return self._list_from(None)

    def _load_cache(self) -> AuthorizationCache[TokenInfo]:
        try:
            return AuthorizationCache(TokenInfo.from_saved, CACHE_CAPACITY, self._load(AUTHORIZATION_CACHE),
                                      key=_name_key)
        except (AttributeError, KeyError, TypeError, ValueError) as error:
            log.error("stored OCPP 2.0.1 authorization cache unreadable (%s); starting with an empty one", error)
            return AuthorizationCache(TokenInfo.from_saved, CACHE_CAPACITY, key=_name_key)

    def _load(self, name: str) -> Any:
        return self._store.load_document(name) if self._store is not None else None

    def _save(self, name: str, body: Any) -> bool:
        ok = True
        if self._store is not None:
            try:
                self._store.save_document(name, body)
            except StoreError as error:
                log.error("cannot store the %s: %s", name, error)
                ok = False
        self._report_sizes()
        return ok

    def _save_cache(self) -> bool:
        return self._save(AUTHORIZATION_CACHE, self.local.cache.to_saved())

    def _report_sizes(self) -> None:
        """LocalAuthListCtrlr.Entries and the Storage (bytes) of the list and the cache."""
        model, local = self.device_model, self.local
        model.set_internal("LocalAuthListCtrlr", "Entries", str(len(local.local_list)))
        model.set_internal("LocalAuthListCtrlr", "Storage", str(_size(local.local_list.to_saved())))
        model.set_internal("AuthCacheCtrlr", "Storage", str(_size(local.cache.to_saved())))


def _size(saved: Any) -> int:
    return len(json.dumps(saved, separators=(",", ":")))

