"""What both OCPP-J versions share in framing: the schema check with values cut, the CALLERROR
vocabularies and the nesting limit (each version's link: tests/ocpp16/test_link.py,
tests/ocpp201/test_link.py)."""

from __future__ import annotations

import json
import tracemalloc

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ocpp.exceptions import OCPPError
from ocpp.messages import Call, _validate_payload

from evcp.ocpp.framing import (MAX_CHECKED_STRING, MAX_ERROR_TEXT, MAX_NESTING, OCPP_J_1_6, OCPP_J_2_0_1, Unusable,
                               check_payload, parse_frame)

MEGABYTE = "X" * 1_000_000


def checked(message: Call, ocpp_j) -> OCPPError | None:
    try:
        check_payload(message, ocpp_j)
    except OCPPError as error:
        return error
    return None


@pytest.mark.parametrize("ocpp_j, action, payload", [
    (OCPP_J_1_6, "Authorize", {"idTag": MEGABYTE}),                                      # maxLength
    (OCPP_J_1_6, "ChangeAvailability", {"connectorId": 1, "type": MEGABYTE}),            # enum
    (OCPP_J_1_6, "ChangeAvailability", {"connectorId": MEGABYTE, "type": "Operative"}),  # type
    (OCPP_J_1_6, "DataTransfer", {"vendorId": "v", MEGABYTE: 1}),                        # additionalProperties
    (OCPP_J_2_0_1, "DataTransfer", {"vendorId": MEGABYTE}),
    (OCPP_J_2_0_1, "Reset", {"type": MEGABYTE}),
    (OCPP_J_2_0_1, "SetVariables", {"setVariableData": [{"attributeValue": "1", "component": {"name": MEGABYTE},
                                                         "variable": {"name": "v"}}]}),
])
def test_a_schema_error_over_a_megabyte_value_is_small_and_costs_little_memory(ocpp_j, action, payload):
    message = Call("id", action, payload)
    assert checked(Call("id", action, payload), ocpp_j) is not None
    tracemalloc.start()
    try:
        error = checked(message, ocpp_j)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert error is not None
    assert len(error.description) <= MAX_ERROR_TEXT + 40 and len(json.dumps(error.details)) < 2 * MAX_ERROR_TEXT
    # The library alone peaks at 2 to 8 MB for these: its error text quotes the value several times over.
    assert peak < 500_000, f"{peak} bytes to check a message with a 1 MB value"


payloads = st.fixed_dictionaries({}, optional={
    "vendorId": st.sampled_from(["v", "V" * 255, "V" * 256, "V" * 10_000, "V" * 20_000]) | st.integers(),
    "messageId": st.sampled_from(["m", "M" * 50, "M" * 51, "M" * 30_000]),
    "data": st.sampled_from(["d", "D" * 10_000, "D" * 10_001, "D" * 50_000]) | st.integers(),
    "D" * 20_000: st.just(1),
})


@settings(max_examples=150, deadline=None)
@given(payload=payloads, ocpp_j=st.sampled_from([OCPP_J_1_6, OCPP_J_2_0_1]))
def test_the_cut_message_breaks_exactly_the_rules_the_message_breaks(payload, ocpp_j):
    try:
        _validate_payload(Call("id", "DataTransfer", payload), ocpp_j.version)
        library_error = None
    except OCPPError as error:
        library_error = error
    ours = checked(Call("id", "DataTransfer", payload), ocpp_j)
    assert (ours is None) == (library_error is None)
    if ours is not None:
        assert type(ours) is type(library_error)


def test_values_the_schema_allows_are_never_cut_in_the_message_handled():
    message = Call("id", "DataTransfer", {"vendorId": "v", "data": "D" * (MAX_CHECKED_STRING * 10)})
    check_payload(message, OCPP_J_1_6)
    assert len(message.payload["data"]) == MAX_CHECKED_STRING * 10


@pytest.mark.parametrize("ocpp_j", [OCPP_J_1_6, OCPP_J_2_0_1])
def test_nesting_up_to_the_limit_is_read_and_beyond_it_refused(ocpp_j):
    def frame(depth: int) -> str:  # the payload object is the first level
        return '[2,"n","DataTransfer",{"data":' + "[" * (depth - 1) + "]" * (depth - 1) + "}]"

    assert isinstance(parse_frame(frame(MAX_NESTING), ocpp_j), Call)
    refused = parse_frame(frame(MAX_NESTING + 1), ocpp_j)
    assert isinstance(refused, Unusable) and refused.code == ocpp_j.malformed_payload and refused.reply_to == "n"


@pytest.mark.parametrize("ocpp_j", [OCPP_J_1_6, OCPP_J_2_0_1])
def test_every_code_a_vocabulary_answers_with_is_one_of_its_own(ocpp_j):
    answering = {ocpp_j.unparsable, ocpp_j.not_a_message, ocpp_j.unknown_type, ocpp_j.unknown_type_without_id,
                 ocpp_j.malformed_call, ocpp_j.malformed_payload, *ocpp_j.spellings.values()}
    assert answering <= ocpp_j.codes
    assert not set(ocpp_j.spellings) & ocpp_j.codes, "a code is never respelled into another of its own"
