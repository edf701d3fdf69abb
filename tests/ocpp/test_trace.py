"""The frame trace (``evcp.ocpp.trace``), the same for both protocols."""

from __future__ import annotations

import logging

from evcp.ocpp.trace import FrameTrace


def test_text_that_was_never_utf_8_is_traced_without_breaking_the_trace_file(tmp_path):
    handler = logging.FileHandler(tmp_path / "trace.log", encoding="utf-8")
    handler.handleError = lambda record: (_ for _ in ()).throw(AssertionError("the trace file refused the line"))
    trace_log = logging.getLogger("evcp.ocpp.trace")
    trace_log.addHandler(handler)
    old_level, trace_log.level = trace_log.level, logging.DEBUG
    try:
        trace = FrameTrace()
        trace.record("in", '[2,"a1","Heartbeat",{"x":"\udcff"}]')
        trace.record("in", b'[2,"a2","Heartbeat",{"x":"\xff"}]')
    finally:
        trace_log.removeHandler(handler)
        trace_log.setLevel(old_level)
        handler.close()
    _, frames = trace.since(0)
    assert [f["frame"] for f in frames] == ['[2,"a1","Heartbeat",{"x":"?"}]', '[2,"a2","Heartbeat",{"x":"\ufffd"}]']
    assert (tmp_path / "trace.log").read_text(encoding="utf-8").count("Heartbeat") == 2
