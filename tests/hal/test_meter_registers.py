"""Register maps and decoding: pure data in, values out."""

from __future__ import annotations

import math
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from evcp.hal.meter_registers import (
    MODELS,
    ReadBlock,
    Register,
    custom_map,
    plan_reads,
)


def words(fmt: str, value: float | int) -> list[int]:
    """The big-endian registers struct packs ``value`` into."""
    raw = struct.pack(f">{fmt}", value)
    return [int.from_bytes(raw[i : i + 2], "big") for i in range(0, len(raw), 2)]


# -- decoding ------------------------------------------------------------------


def test_float32_most_significant_register_first():
    assert words("f", 230.5) == [0x4366, 0x8000]
    assert Register(0, "float32").decode([0x4366, 0x8000]) == 230.5


def test_float32_little_word_order_swaps_registers_not_bytes():
    register = Register(0, "float32", word_order="little")
    assert register.decode([0x8000, 0x4366]) == 230.5


def test_eastron_energy_kwh_float_becomes_wh():
    energy = MODELS["sdm630"].registers["energy_import_wh"]
    assert energy.decode(words("f", 12.5)) == 12500.0


def test_abb_energy_uint64_hundredths_of_kwh_become_wh():
    energy = MODELS["abb-b23"].registers["energy_import_wh"]
    assert energy.decode(words("Q", 123456)) == pytest.approx(1234560.0)


def test_abb_power_is_signed_hundredths_of_a_watt():
    power = MODELS["abb-b23"].registers["power_w"]
    assert power.decode(words("i", -740000)) == pytest.approx(-7400.0)
    assert power.decode(words("i", 740000)) == pytest.approx(7400.0)


def test_abb_voltage_and_current_scaling():
    assert MODELS["abb-b23"].registers["voltage_l2"].decode(words("I", 2301)) == pytest.approx(230.1)
    assert MODELS["abb-b23"].registers["current_l3"].decode(words("I", 1600)) == pytest.approx(16.0)


@pytest.mark.parametrize(
    ("data_type", "fmt", "value"),
    [("int16", "h", -2), ("uint16", "H", 65534), ("int32", "i", -100000), ("uint32", "I", 4_000_000_000)],
)
def test_integer_types(data_type, fmt, value):
    assert Register(0, data_type).decode(words(fmt, value)) == value


def test_uint32_little_word_order():
    assert Register(0, "uint32", word_order="little").decode([0x5678, 0x1234]) == 0x12345678


@pytest.mark.parametrize(
    ("data_type", "registers"),
    [
        ("uint64", [0xFFFF] * 4),
        ("uint32", [0xFFFF] * 2),
        ("uint16", [0xFFFF]),
        ("int32", [0x7FFF, 0xFFFF]),
        ("int16", [0x7FFF]),
    ],
)
def test_not_available_patterns_decode_to_nan(data_type, registers):
    assert math.isnan(Register(0x5000, data_type, 10.0, 3).decode(registers))


def test_float_nan_stays_nan():
    assert math.isnan(Register(0).decode(words("f", math.nan)))


def test_wrong_register_count_is_an_error():
    with pytest.raises(ValueError, match="needs 2 registers, got 1"):
        Register(0, "float32").decode([0x4366])


def test_register_out_of_range_is_an_error():
    with pytest.raises(ValueError, match="0..0xFFFF"):
        Register(0, "uint16").decode([0x10000])


@given(st.floats(min_value=-1e6, max_value=1e6, allow_nan=False), st.sampled_from(["big", "little"]))
def test_float32_encode_decode_round_trip(value, word_order):
    register = Register(0, "float32", 1000.0, word_order=word_order)
    assert register.decode(register.encode(value)) == pytest.approx(value, rel=1e-6, abs=1e-3)


@given(st.integers(min_value=0, max_value=2**40))
def test_uint64_encode_decode_round_trip(hundredths_kwh):
    register = MODELS["abb-b23"].registers["energy_import_wh"]
    assert register.decode(register.encode(hundredths_kwh * 10.0)) == pytest.approx(hundredths_kwh * 10.0)


def test_encode_rejects_values_that_do_not_fit():
    with pytest.raises(ValueError, match="does not fit"):
        Register(0, "uint16").encode(-1)


def test_encode_nan_gives_the_not_available_pattern():
    assert Register(0, "uint32").encode(math.nan) == [0xFFFF, 0xFFFF]
    assert Register(0, "int32").encode(math.nan) == [0x7FFF, 0xFFFF]


# -- built-in maps -------------------------------------------------------------


@pytest.mark.parametrize("model", ["sdm630", "sdm72v2"])
def test_three_phase_eastron_layout(model):
    registers = MODELS[model].registers
    assert registers["energy_import_wh"].address == 0x0048
    assert registers["energy_total_wh"].address == 0x0156
    assert registers["power_w"].address == 0x0034
    assert [registers[f"voltage_l{n}"].address for n in (1, 2, 3)] == [0x00, 0x02, 0x04]
    assert [registers[f"current_l{n}"].address for n in (1, 2, 3)] == [0x06, 0x08, 0x0A]
    assert {r.function for r in registers.values()} == {4}
    assert {r.data_type for r in registers.values()} == {"float32"}
    assert {r.word_order for r in registers.values()} == {"big"}


def test_the_original_sdm72_has_power_and_energy_only():
    """SDM72D-M (v1) manual: total system power 30053, import 30073, total 30343; no voltage or
    current registers (the v2 added them at 30001..30012)."""
    sdm72 = MODELS["sdm72"]
    assert {q: r.address for q, r in sdm72.registers.items()} == {
        "power_w": 0x0034, "energy_import_wh": 0x0048, "energy_total_wh": 0x0156}
    assert sdm72.phase_quantities("voltage") == () and sdm72.phase_quantities("current") == ()
    assert [(b.address, b.count) for b in plan_reads(sdm72, ("energy_import_wh", "power_w"))] == [(0x34, 2), (0x48, 2)]


def test_the_sdm72_v1_map_only_asks_what_a_v2_also_has():
    """A v2 set to "sdm72" still reads (power and energy), it only lacks the per-phase values."""
    v1, v2 = MODELS["sdm72"].registers, MODELS["sdm72v2"].registers
    assert all(v2[q] == register for q, register in v1.items())


def test_sdm120_is_single_phase_with_power_at_0x0c():
    sdm120 = MODELS["sdm120"]
    assert sdm120.registers["power_w"].address == 0x000C
    assert sdm120.phase_quantities("voltage") == ("voltage_l1",)
    assert sdm120.phase_quantities("current") == ("current_l1",)


def test_abb_b23_uses_holding_registers_and_has_no_total():
    abb = MODELS["abb-b23"]
    assert {r.function for r in abb.registers.values()} == {3}
    assert abb.registers["energy_import_wh"].data_type == "uint64"
    assert abb.registers["power_w"].address == 0x5B14
    with pytest.raises(ValueError, match="no energy_total_wh"):
        abb.energy_quantity("total")


def test_energy_quantity_by_config_name():
    assert MODELS["sdm630"].energy_quantity("import") == "energy_import_wh"
    assert MODELS["sdm630"].energy_quantity("total") == "energy_total_wh"


# -- read planning -------------------------------------------------------------

SDM630_SAMPLE = (
    "energy_import_wh", "power_w",
    "voltage_l1", "voltage_l2", "voltage_l3", "current_l1", "current_l2", "current_l3",
)


def test_sdm630_sample_needs_three_requests():
    blocks = plan_reads(MODELS["sdm630"], SDM630_SAMPLE)
    assert [(b.function, b.address, b.count) for b in blocks] == [(4, 0x00, 12), (4, 0x34, 2), (4, 0x48, 2)]
    assert blocks[0].quantities == (
        "voltage_l1", "voltage_l2", "voltage_l3", "current_l1", "current_l2", "current_l3",
    )


def test_abb_sample_does_not_merge_across_the_neutral_current_gap():
    blocks = plan_reads(MODELS["abb-b23"], SDM630_SAMPLE)
    assert [(b.function, b.address, b.count) for b in blocks] == [
        (3, 0x5000, 4), (3, 0x5B00, 6), (3, 0x5B0C, 6), (3, 0x5B14, 2),
    ]


def test_blocks_respect_the_request_size_limit():
    blocks = plan_reads(MODELS["sdm630"], SDM630_SAMPLE, max_registers=4)
    assert [(b.address, b.count) for b in blocks] == [(0x00, 4), (0x04, 4), (0x08, 4), (0x34, 2), (0x48, 2)]


def test_different_function_codes_never_share_a_block():
    register_map = custom_map({
        "power_w": {"address": 0, "type": "float32", "function": 3},
        "energy_import_wh": {"address": 2, "type": "float32", "function": 4},
    })
    assert len(plan_reads(register_map, ("power_w", "energy_import_wh"))) == 2


def test_read_block_decodes_each_quantity_at_its_offset():
    register_map = MODELS["sdm630"]
    block = plan_reads(register_map, SDM630_SAMPLE)[0]
    registers = []
    for value in (230.0, 231.0, 229.0, 16.0, 15.5, 15.0):
        registers += words("f", value)
    assert block.decode(register_map, registers) == {
        "voltage_l1": 230.0, "voltage_l2": 231.0, "voltage_l3": 229.0,
        "current_l1": 16.0, "current_l2": 15.5, "current_l3": 15.0,
    }


def test_read_block_rejects_a_short_response():
    block = ReadBlock(4, 0x34, 2, ("power_w",))
    with pytest.raises(ValueError, match="expected 2 registers, got 1"):
        block.decode(MODELS["sdm630"], [0])


# -- custom maps ---------------------------------------------------------------

CARLO_GAVAZZI_EM340 = {
    "energy_import_wh": {"address": 0x0034, "type": "int32", "scale": 100, "function": 4, "word_order": "little"},
    "power_w": {"address": 0x0028, "type": "int32", "scale": 0.1, "function": 4, "word_order": "little"},
    "voltage_l1": {"address": 0x0000, "type": "int32", "scale": 0.1, "function": 4, "word_order": "little"},
    "current_l1": {"address": 0x000C, "type": "int32", "scale": 0.001, "function": 4, "word_order": "little"},
}


def test_custom_map_from_config():
    register_map = custom_map(CARLO_GAVAZZI_EM340)
    power = register_map.registers["power_w"]
    assert power == Register(0x0028, "int32", 0.1, 4, "little")
    assert power.decode([0x4E20, 0x0000]) == pytest.approx(2000.0)
    assert register_map.energy_quantity("import") == "energy_import_wh"


def test_custom_map_defaults_scale_and_word_order():
    register_map = custom_map({
        "power_w": {"address": 12, "type": "float32", "function": 4},
        "energy_total_wh": {"address": 0x156, "type": "float32", "function": 4, "scale": 1000},
    })
    assert register_map.registers["power_w"] == Register(12, "float32", 1.0, 4, "big")


def _with(quantity: str, **fields: object) -> dict:
    registers = {q: dict(spec) for q, spec in CARLO_GAVAZZI_EM340.items()}
    registers[quantity].update(fields)
    return registers


@pytest.mark.parametrize(
    ("registers", "message"),
    [
        (_with("power_w", type="float16"), r"^power_w\.type: must be one of .*\(got 'float16'\)"),
        (_with("power_w", function=6), r"^power_w\.function: must be 3 .* \(got 6\)"),
        (_with("voltage_l1", address=70000), r"^voltage_l1\.address: .*\(got 70000\)"),
        (_with("voltage_l1", address=True), r"^voltage_l1\.address: .*\(got True\)"),
        (_with("voltage_l1", address="0x10"), r"^voltage_l1\.address: .*\(got '0x10'\)"),
        (_with("current_l1", word_order="middle"), r"^current_l1\.word_order: .*\(got 'middle'\)"),
        (_with("current_l1", scale=0), r"^current_l1\.scale: must be a finite, non-zero number \(got 0\)"),
        (_with("current_l1", scale="1"), r"^current_l1\.scale: .*\(got '1'\)"),
        (_with("power_w", unit="W"), r"^power_w\.unit: unknown field"),
        (_with("power_w", address=0xFFFF), r"^power_w\.address: int32 at 0xffff runs past"),
        ({**CARLO_GAVAZZI_EM340, "frequency_hz": {}}, r"^frequency_hz: unknown quantity"),
        ({**CARLO_GAVAZZI_EM340, "voltage_l3": {"address": 4, "type": "int32", "function": 4}},
         r"^voltage_l3: given without voltage_l2"),
        ({"energy_import_wh": CARLO_GAVAZZI_EM340["energy_import_wh"]}, r"^power_w: missing"),
        ({"power_w": CARLO_GAVAZZI_EM340["power_w"]}, r"^energy_import_wh: missing"),
        ({"power_w": {"type": "int32", "function": 4}}, r"^power_w\.address: missing"),
        ({"power_w": {"address": 1, "function": 4}}, r"^power_w\.type: missing"),
        ({"power_w": {"address": 1, "type": "int32"}}, r"^power_w\.function: missing"),
        ({"power_w": 40}, r"^power_w: must be a table"),
        ({}, r"^registers: must map"),
    ],
)
def test_custom_map_errors_name_quantity_and_field(registers, message):
    with pytest.raises(ValueError, match=message):
        custom_map(registers)
