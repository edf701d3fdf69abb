"""Recovery at power-up: transactions cut by a power loss are stopped with PowerLoss, stamped when
the charger last saw them running."""

from __future__ import annotations

from types import SimpleNamespace

from evcp.ocpp.outbox import Outbox
from evcp.runtime.app import recover_after_an_unclean_stop
from evcp.storage import StateStore
from evcp.timestamps import parse_timestamp, timestamp

T0 = 1_800_000_000.0
NO_METERS = SimpleNamespace(connectors=[])
"""Hardware whose meters cannot be read at power-up: the saved readings are used."""


def power_loss_stop(store: StateStore) -> dict:
    [stop] = [m.payload for m in store.outbox_entries() if m.action == "StopTransaction"]
    assert stop["reason"] == "PowerLoss"
    return stop


async def test_tc_032_2_power_loss_stop_is_stamped_at_the_last_saved_reading(tmp_path):
    with StateStore(tmp_path / "evcp.sqlite3") as store:
        store.transaction_started(1, 1, "TAG", 100, T0)
        store.meter_reading(1, 180.0, T0 + 50)
        await recover_after_an_unclean_stop(store, NO_METERS)
        stop = power_loss_stop(store)
        assert (parse_timestamp(stop["timestamp"]), stop["meterStop"]) == (T0 + 50, 180)


async def test_power_loss_stop_never_comes_before_a_start_re_stamped_by_a_clock_correction(tmp_path):
    """The transaction started while the clock was unsynchronised (an hour behind); the central
    system's time corrected it and re-stamped the queued StartTransaction; the power went before
    any later reading was saved. The stop must not be an hour before the start."""
    with StateStore(tmp_path / "evcp.sqlite3") as store:
        outbox = Outbox(store, clock_trusted=lambda: False)
        store.transaction_started(1, 1, "TAG", 100, T0)
        outbox.put("StartTransaction", {"connectorId": 1, "idTag": "TAG", "meterStart": 100,
                                        "timestamp": timestamp(T0)}, 1)
        assert outbox.retime(3600.0) == 1
        [start] = store.outbox_entries()
        assert parse_timestamp(start.payload["timestamp"]) == T0 + 3600
        await recover_after_an_unclean_stop(store, NO_METERS)
        assert parse_timestamp(power_loss_stop(store)["timestamp"]) >= T0 + 3600
