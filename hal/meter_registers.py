"""Register maps of Modbus energy meters, and pure decoding of their registers.

A ``RegisterMap`` says, per quantity, where a meter keeps it and how it is
encoded. Quantities are in the units their names carry:

- ``energy_import_wh``, ``energy_total_wh`` (import + export): Wh
- ``power_w``: total active power, W (negative while exporting)
- ``voltage_l1`` .. ``voltage_l3``: line-to-neutral V
- ``current_l1`` .. ``current_l3``: A

Addresses are 0-based protocol addresses (Eastron 3xxxx register minus 30001).
Bytes within a register are always big-endian; ``word_order`` only says which
register of a multi-register value comes first ("big": most significant first).

Integer registers read with every bit set (unsigned) or as the largest positive
value (signed) mean "not available" (ABB convention) and decode to NaN.

Nothing here does I/O: ``plan_reads`` turns a map into Modbus read requests and
``ReadBlock.decode`` turns the registers of a response into values.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal, Mapping, Sequence

DataType = Literal["float32", "int32", "uint32", "uint64", "int16", "uint16"]
WordOrder = Literal["big", "little"]

#: Holding registers (FC03) and input registers (FC04).
READ_HOLDING_REGISTERS = 3
READ_INPUT_REGISTERS = 4

#: The Modbus limit for one read-registers request.
MAX_REGISTERS_PER_READ = 125

#: struct format character and register count per data type.
_LAYOUT: Mapping[str, tuple[str, int]] = MappingProxyType({
    "float32": ("f", 2),
    "int32": ("i", 2),
    "uint32": ("I", 2),
    "uint64": ("Q", 4),
    "int16": ("h", 1),
    "uint16": ("H", 1),
})
DATA_TYPES: tuple[str, ...] = tuple(_LAYOUT)
WORD_ORDERS: tuple[str, ...] = ("big", "little")
FUNCTIONS: tuple[int, ...] = (READ_HOLDING_REGISTERS, READ_INPUT_REGISTERS)

PHASE_QUANTITIES: Mapping[str, tuple[str, ...]] = MappingProxyType({
    "voltage": ("voltage_l1", "voltage_l2", "voltage_l3"),
    "current": ("current_l1", "current_l2", "current_l3"),
})
#: ``MeterConfig.energy`` -> the quantity that answers it.
ENERGY_QUANTITIES: Mapping[str, str] = MappingProxyType(
    {"import": "energy_import_wh", "total": "energy_total_wh"}
)
QUANTITIES: tuple[str, ...] = (
    "energy_import_wh",
    "energy_total_wh",
    "power_w",
    *PHASE_QUANTITIES["voltage"],
    *PHASE_QUANTITIES["current"],
)


def _unknown_quantity(quantity: str) -> str:
    return f"{quantity}: unknown quantity; known are " + ", ".join(QUANTITIES)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _problem_with(field: str, value: object) -> str | None:
    """What is wrong with one field of a register description, or None."""
    if field == "address":
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 0xFFFF:
            return "must be an integer protocol address 0..65535"
    elif field == "type":
        if value not in _LAYOUT:
            return "must be one of " + ", ".join(DATA_TYPES)
    elif field == "scale":
        if not _is_number(value) or not math.isfinite(value) or value == 0:
            return "must be a finite, non-zero number"
    elif field == "function":
        if not isinstance(value, int) or isinstance(value, bool) or value not in FUNCTIONS:
            return "must be 3 (holding registers) or 4 (input registers)"
    elif field == "word_order":
        if value not in WORD_ORDERS:
            return 'must be "big" (most significant register first) or "little"'
    return None


@dataclass(frozen=True)
class Register:
    """Where one quantity lives and how to turn its registers into a value.

    The value in the quantity's unit is the raw register value times ``scale``.
    Raises ValueError on construction when a field is out of range.
    """

    address: int
    data_type: DataType = "float32"
    scale: float = 1.0
    function: int = READ_INPUT_REGISTERS
    word_order: WordOrder = "big"

    def __post_init__(self) -> None:
        for field, value in (
            ("address", self.address),
            ("type", self.data_type),
            ("scale", self.scale),
            ("function", self.function),
            ("word_order", self.word_order),
        ):
            if problem := _problem_with(field, value):
                raise ValueError(f"{field}: {problem} (got {value!r})")
        if self.address + self.count > 0x10000:
            raise ValueError(
                f"address: {self.data_type} at {self.address:#06x} runs past register 0xFFFF"
            )

    @property
    def count(self) -> int:
        """How many 16-bit registers the value occupies."""
        return _LAYOUT[self.data_type][1]

    def decode(self, words: Sequence[int]) -> float:
        """The value of ``words`` (exactly ``count`` registers) in the quantity's unit.

        NaN when the meter says "not available"; raises ValueError when the
        number of registers is wrong or a register is outside 0..0xFFFF.
        """
        if len(words) != self.count:
            raise ValueError(f"{self.data_type} needs {self.count} registers, got {len(words)}")
        if any(not 0 <= word <= 0xFFFF for word in words):
            raise ValueError(f"registers must be 0..0xFFFF, got {list(words)}")
        ordered = list(words) if self.word_order == "big" else list(reversed(words))
        raw_bytes = struct.pack(f">{self.count}H", *ordered)
        if self._is_not_available(raw_bytes):
            return math.nan
        (raw,) = struct.unpack(f">{_LAYOUT[self.data_type][0]}", raw_bytes)
        return raw * self.scale

    def encode(self, value: float) -> list[int]:
        """The registers a meter would hold for ``value``; inverse of ``decode``.

        Integer types round to the nearest step of ``scale``; NaN becomes the
        "not available" pattern. Raises ValueError when the value does not fit.
        """
        code = _LAYOUT[self.data_type][0]
        if self.data_type == "float32":
            raw: float | int = value / self.scale
        elif math.isnan(value):
            raw = self._not_available_raw()
        else:
            raw = round(value / self.scale)
        try:
            raw_bytes = struct.pack(f">{code}", raw)
        except (struct.error, OverflowError) as exc:
            raise ValueError(
                f"{value!r} does not fit a {self.data_type} with scale {self.scale}"
            ) from exc
        words = list(struct.unpack(f">{self.count}H", raw_bytes))
        return words if self.word_order == "big" else list(reversed(words))

    def _not_available_raw(self) -> int:
        bits = 16 * self.count
        return (1 << (bits - 1)) - 1 if self.data_type.startswith("int") else (1 << bits) - 1

    def _is_not_available(self, raw_bytes: bytes) -> bool:
        if self.data_type == "float32":
            return False
        return int.from_bytes(raw_bytes, "big") == self._not_available_raw()


@dataclass(frozen=True)
class RegisterMap:
    """The registers of one meter model, quantity -> ``Register``.

    Always has ``power_w`` and at least one energy quantity; phase quantities
    run from L1 without gaps (a single-phase meter has only ``*_l1``).
    """

    model: str
    registers: Mapping[str, Register]

    def __post_init__(self) -> None:
        object.__setattr__(self, "registers", MappingProxyType(dict(self.registers)))
        for quantity in self.registers:
            if quantity not in QUANTITIES:
                raise ValueError(_unknown_quantity(quantity))
        if "power_w" not in self.registers:
            raise ValueError("power_w: missing; every meter map needs the total active power")
        if not any(q in self.registers for q in ENERGY_QUANTITIES.values()):
            raise ValueError(
                "energy_import_wh: missing; a meter map needs energy_import_wh or energy_total_wh"
            )
        for names in PHASE_QUANTITIES.values():
            present = [name in self.registers for name in names]
            for index in range(1, len(names)):
                if present[index] and not present[index - 1]:
                    raise ValueError(f"{names[index]}: given without {names[index - 1]}")

    def phase_quantities(self, kind: Literal["voltage", "current"]) -> tuple[str, ...]:
        """The ``voltage_l*`` or ``current_l*`` quantities this meter has, L1 first."""
        return tuple(name for name in PHASE_QUANTITIES[kind] if name in self.registers)

    def energy_quantity(self, energy: str) -> str:
        """The quantity for ``MeterConfig.energy`` ("import" or "total").

        Raises ValueError when the meter has no register for it.
        """
        quantity = ENERGY_QUANTITIES.get(energy)
        if quantity is None:
            raise ValueError(f'energy must be "import" or "total" (got {energy!r})')
        if quantity not in self.registers:
            raise ValueError(f"the {self.model} map has no {quantity} register")
        return quantity


@dataclass(frozen=True)
class ReadBlock:
    """One read request covering the registers of one or more quantities."""

    function: int
    address: int
    count: int
    quantities: tuple[str, ...]

    def describe(self) -> str:
        kind = "input" if self.function == READ_INPUT_REGISTERS else "holding"
        last = self.address + self.count - 1
        return f"{kind} registers {self.address:#06x}..{last:#06x} (FC{self.function:02d})"

    def decode(self, register_map: RegisterMap, words: Sequence[int]) -> dict[str, float]:
        """Quantity -> value from the ``count`` registers the meter returned.

        Values may be NaN ("not available"); raises ValueError when ``words``
        is not exactly ``count`` long.
        """
        if len(words) != self.count:
            raise ValueError(
                f"{self.describe()}: expected {self.count} registers, got {len(words)}"
            )
        values = {}
        for quantity in self.quantities:
            register = register_map.registers[quantity]
            offset = register.address - self.address
            values[quantity] = register.decode(words[offset : offset + register.count])
        return values


def plan_reads(
    register_map: RegisterMap,
    quantities: Sequence[str],
    max_registers: int = MAX_REGISTERS_PER_READ,
) -> tuple[ReadBlock, ...]:
    """The fewest read requests for ``quantities``: contiguous registers share one.

    Registers are merged only when they touch or overlap, never across a gap
    (some meters refuse reads of undefined registers). Blocks come sorted by
    function code, then address.
    """
    registers = sorted(
        (register_map.registers[q].function, register_map.registers[q].address, q)
        for q in dict.fromkeys(quantities)
    )
    blocks: list[ReadBlock] = []
    for function, address, quantity in registers:
        end = address + register_map.registers[quantity].count
        if blocks:
            last = blocks[-1]
            last_end = last.address + last.count
            new_count = max(last_end, end) - last.address
            if last.function == function and address <= last_end and new_count <= max_registers:
                merged = (*last.quantities, quantity)
                blocks[-1] = ReadBlock(function, last.address, new_count, merged)
                continue
        blocks.append(ReadBlock(function, address, end - address, (quantity,)))
    return tuple(blocks)


def _eastron(*, phases: int, power_address: int) -> dict[str, Register]:
    """Eastron SDM layout: FC04 float32, most significant register first, energy in kWh; ``phases``
    0 for a meter without voltage and current registers."""
    registers = {
        "energy_import_wh": Register(0x0048, "float32", 1000.0),
        "energy_total_wh": Register(0x0156, "float32", 1000.0),
        "power_w": Register(power_address, "float32"),
    }
    for phase in range(phases):
        registers[f"voltage_l{phase + 1}"] = Register(0x0000 + 2 * phase, "float32")
        registers[f"current_l{phase + 1}"] = Register(0x0006 + 2 * phase, "float32")
    return registers


def _abb_b23() -> dict[str, Register]:
    """ABB B23/B24: FC03 big-endian integers with scaling (energy 0.01 kWh, P 0.01 W)."""
    hold = READ_HOLDING_REGISTERS
    registers = {
        "energy_import_wh": Register(0x5000, "uint64", 10.0, hold),
        "power_w": Register(0x5B14, "int32", 0.01, hold),
    }
    for phase in range(3):
        registers[f"voltage_l{phase + 1}"] = Register(0x5B00 + 2 * phase, "uint32", 0.1, hold)
        registers[f"current_l{phase + 1}"] = Register(0x5B0C + 2 * phase, "uint32", 0.01, hold)
    return registers


#: The built-in models, by their ``MeterConfig.model`` name.
MODELS: Mapping[str, RegisterMap] = MappingProxyType({
    "sdm630": RegisterMap("sdm630", _eastron(phases=3, power_address=0x0034)),
    # The original SDM72D-M has only total power and the energy counters (its manual; volkszaehler/mbmd
    # sdm72.go: "does not provide voltage data"); the SDM72D-M v2 adds voltage and current per phase.
    # A v2 set to "sdm72" still reads: power and energy only.
    "sdm72": RegisterMap("sdm72", _eastron(phases=0, power_address=0x0034)),
    "sdm72v2": RegisterMap("sdm72v2", _eastron(phases=3, power_address=0x0034)),
    "sdm120": RegisterMap("sdm120", _eastron(phases=1, power_address=0x000C)),
    "abb-b23": RegisterMap("abb-b23", _abb_b23()),
})

_REQUIRED_FIELDS = ("address", "type", "function")
_OPTIONAL_FIELDS = {"scale": 1.0, "word_order": "big"}


def custom_map(registers: Mapping[str, Mapping[str, object]], model: str = "custom") -> RegisterMap:
    """A ``RegisterMap`` from config: quantity -> {address, type, function, scale, word_order}.

    ``address``, ``type`` and ``function`` are required; ``scale`` defaults to
    1.0 and ``word_order`` to "big". Raises ValueError whose message starts with
    ``quantity.field:`` and says what is wrong and what was given.
    """
    if not isinstance(registers, Mapping) or not registers:
        raise ValueError(
            f"registers: must map quantities to register descriptions (got {registers!r})"
        )
    built: dict[str, Register] = {}
    for quantity, spec in registers.items():
        if quantity not in QUANTITIES:
            raise ValueError(_unknown_quantity(quantity))
        if not isinstance(spec, Mapping):
            raise ValueError(f"{quantity}: must be a table of register fields (got {spec!r})")
        for field in spec:
            if field not in _REQUIRED_FIELDS and field not in _OPTIONAL_FIELDS:
                known = ", ".join((*_REQUIRED_FIELDS, *_OPTIONAL_FIELDS))
                raise ValueError(f"{quantity}.{field}: unknown field; known are {known}")
        for field in _REQUIRED_FIELDS:
            if field not in spec:
                raise ValueError(f"{quantity}.{field}: missing")
        fields = {**_OPTIONAL_FIELDS, **spec}
        for field, value in fields.items():
            if problem := _problem_with(field, value):
                raise ValueError(f"{quantity}.{field}: {problem} (got {value!r})")
        try:
            built[quantity] = Register(
                address=fields["address"],
                data_type=fields["type"],
                scale=float(fields["scale"]),
                function=fields["function"],
                word_order=fields["word_order"],
            )
        except ValueError as exc:
            raise ValueError(f"{quantity}.{exc}") from None
    return RegisterMap(model, built)
