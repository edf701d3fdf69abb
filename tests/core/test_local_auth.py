"""The protocol-neutral local list, cache and rules (evcp.core.local_auth) with a verdict type of
their own: whatever a protocol's entries look like, the same rules hold. The 1.6 and 2.0.1 edges
are tested in tests/ocpp16/test_local_auth.py and tests/ocpp201/test_authorization.py."""

from __future__ import annotations

from dataclasses import dataclass, replace

from hypothesis import given, settings
from hypothesis import strategies as st

from evcp.core.local_auth import AuthorizationCache, LocalAuthorization, LocalList

NOW = 1_000.0


@dataclass(frozen=True)
class Verdict:
    status: str
    until: float | None = None

    def as_of(self, now: float) -> "Verdict":
        return replace(self, status="Expired") if self.until is not None and now >= self.until else self

    def to_saved(self):
        return [self.status, self.until]


def from_saved(saved) -> Verdict:
    return Verdict(*saved)


def rules(entries=(), cached=()) -> LocalAuthorization:
    local_list = LocalList(from_saved)
    if entries:
        assert local_list.update("Full", 1, list(entries), max_length=10) == "Accepted"
    cache = AuthorizationCache(from_saved, capacity=3)
    for token, verdict in cached:
        cache.remember(token, verdict)
    return LocalAuthorization(local_list, cache)


def test_list_update_rules_are_the_same_for_any_entry_type():
    local_list = LocalList(from_saved)
    assert local_list.update("Full", 2, [("A", Verdict("Accepted")), ("b", Verdict("Blocked"))], max_length=5) \
        == "Accepted"
    assert local_list.update("Differential", 2, [("C", Verdict("Accepted"))], max_length=5) == "VersionMismatch"
    assert local_list.update("Differential", 3, [("B", None)], max_length=5) == "Accepted"
    assert local_list.update("Full", 4, [("X", None)], max_length=5) == "Failed"
    assert local_list.update("Full", 4, [("X", Verdict("Accepted")), ("x", Verdict("Accepted"))], max_length=5) \
        == "Failed"
    assert local_list.update("Sometimes", 4, [], max_length=5) == "Failed"
    assert local_list.update("Differential", 4, [("C", Verdict("Accepted"))], max_length=1) == "Failed"
    assert [t for t, _ in local_list.items()] == ["A"] and local_list.version == 3
    assert LocalList(from_saved, local_list.to_saved()).to_saved() == local_list.to_saved()


def test_a_key_that_rejects_a_token_fails_the_update():
    def strict(token: str) -> str:
        if not token.isalnum():
            raise ValueError(f"bad token {token!r}")
        return token.casefold()

    local_list = LocalList(from_saved, key=strict)
    assert local_list.update("Full", 1, [("OK1", Verdict("Accepted")), ("no way", Verdict("Accepted"))],
                             max_length=5) == "Failed"
    assert len(local_list) == 0


def test_the_cache_forgets_the_least_recently_used_and_keeps_its_order_when_saved():
    cache = AuthorizationCache(from_saved, capacity=2)
    cache.remember("A", Verdict("Accepted"))
    cache.remember("B", Verdict("Accepted"))
    cache.get("A", NOW)
    cache.remember("C", Verdict("Blocked"))
    assert [t for t, _ in cache.items()] == ["A", "C"]
    again = AuthorizationCache(from_saved, capacity=2, saved=cache.to_saved())
    assert again.to_saved() == cache.to_saved()
    assert again.forget("A") and not again.forget("A")


tokens = st.sampled_from(["A", "B", "C", "D"])
verdicts = st.builds(Verdict, st.sampled_from(["Accepted", "Blocked", "Invalid", "Expired"]),
                     st.none() | st.floats(NOW - 10, NOW + 10))


@settings(max_examples=300, deadline=None)
@given(listed=st.dictionaries(tokens, verdicts), learned=st.lists(st.tuples(tokens, verdicts)), token=tokens,
       online=st.booleans(), list_enabled=st.booleans(), cache_enabled=st.booleans(),
       pre_authorize=st.booleans(), authorize_offline=st.booleans())
def test_nothing_not_accepted_is_ever_accepted_locally(listed, learned, token, online, list_enabled, cache_enabled,
                                                       pre_authorize, authorize_offline):
    """Whatever the list, the cache and the switches: a local acceptance needs the switch for
    that situation, and the entry that decides (the list's before the cache's) is Accepted now."""
    auth = rules(listed.items())
    for learned_token, verdict in learned:
        auth.learn(learned_token, verdict, list_enabled=list_enabled, cache_enabled=cache_enabled)
    decision = auth.decide(token, NOW, online=online, list_enabled=list_enabled, cache_enabled=cache_enabled,
                           pre_authorize=pre_authorize, authorize_offline=authorize_offline)
    if not decision.accepted:
        return
    assert pre_authorize if online else authorize_offline
    if list_enabled and token in listed:
        assert decision.source == "local list" and listed[token].as_of(NOW).status == "Accepted"
    else:
        assert cache_enabled and decision.source == "cache"
        assert auth.cache.stored(token).as_of(NOW).status == "Accepted"
