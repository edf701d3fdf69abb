"""The transaction outbox: order, and transactionIds filled in from the start's confirmation."""

from evcp.ocpp16.outbox import Outbox


async def test_stop_decided_before_the_start_conf_carries_the_real_transaction_id():
    box = Outbox()
    start = box.put("StartTransaction", {"connectorId": 1, "idTag": "A", "meterStart": 0, "timestamp": "t"}, 7)
    stop = box.put("StopTransaction", {"transactionId": None, "meterStop": 5, "timestamp": "t"}, 7)
    assert box.head() is start
    assert box.resolved_payload(stop) is None, "unknown until the StartTransaction.conf"
    box.confirm_start(start, 4711)
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


async def test_messages_stamped_by_an_untrusted_clock_are_shifted_once_it_is_corrected():
    trusted = [False]
    box = Outbox(clock_trusted=lambda: trusted[0])
    early = box.put("MeterValues", {"connectorId": 1, "transactionId": 1, "meterValue": [
        {"timestamp": "2020-01-01T00:00:00.000Z", "sampledValue": []}]}, 1)
    trusted[0] = True
    later = box.put("StopTransaction", {"transactionId": 1, "meterStop": 5, "timestamp": "2023-11-14T22:13:20.000Z"}, 1)
    assert box.retime(3600.5) == 1
    assert early.payload["meterValue"][0]["timestamp"] == "2020-01-01T01:00:00.500Z"
    assert later.payload["timestamp"] == "2023-11-14T22:13:20.000Z"
    assert box.retime(10) == 0, "shifted once only"
