"""The transaction outbox: order, and transactionIds filled in from the start's confirmation."""

from evcp.ocpp16.outbox import Outbox


async def test_stop_decided_before_the_start_conf_carries_the_real_transaction_id():
    box = Outbox()
    start = box.put("StartTransaction", {"connectorId": 1, "idTag": "A", "meterStart": 0, "timestamp": "t"}, 7)
    stop = box.put("StopTransaction", {"transactionId": None, "meterStop": 5, "timestamp": "t"}, 7)
    assert box.head() is start
    assert box.resolved_payload(stop) is None, "unknown until the StartTransaction.conf"
    box.done(start)
    box.confirm_start(7, 4711)
    assert box.head() is stop
    assert box.resolved_payload(stop)["transactionId"] == 4711
    assert stop.payload["transactionId"] is None, "the stored entry is not rewritten"


async def test_entries_leave_in_the_order_they_came():
    box = Outbox()
    entries = [box.put("MeterValues", {"connectorId": 1, "meterValue": [], "transactionId": 1}, 1) for _ in range(3)]
    seen = []
    while box.head() is not None:
        seen.append(box.head())
        box.done(box.head())
    assert seen == entries and len(box) == 0
