"""The proximity pilot (PP) of a socket outlet: the current rating of the cable plugged into it.

A Type 2 plug carries a resistor Rc between PP and PE that codes the cable's rating
(IEC 61851-1 Annex B, IEC 62196-2). The charger pulls PP up to ``supply_v`` through
``pullup_ohm`` and measures the PP voltage with an ADC channel; the voltage divider gives Rc:

    Rc = pullup_ohm * V / (supply_v - V)

The interpretation ranges are those of IEC 61851-1 as Phoenix Contact's EV Charge Control
manual (106377, Table 5-1) quotes them (the standard itself was not read):

    Rc < 75 Ohm            error (PP shorted)
    75 .. 150 Ohm          63 A (70 A single-phase; evcp takes 63)
    150 .. 330 Ohm         32 A
    330 .. 1000 Ohm        20 A
    1000 .. 2200 Ohm       13 A
    above 2200 Ohm         no valid rating

Above ``OPEN_OHM`` the divider reads the supply: no cable. Between 2.2 kOhm and ``OPEN_OHM``
the value is out of band (a damaged cable or a broken resistor): no charge. A tethered charger
has no PP input at all.
"""

from __future__ import annotations

import logging
import statistics
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

from evcp.hal import HardwareError

if TYPE_CHECKING:
    from evcp.config import ProximityConfig

log = logging.getLogger("evcp.hal.proximity")

#: (lowest Rc, highest Rc, rating in A), IEC 61851-1 Annex B interpretation ranges (see above).
CABLE_CODING: tuple[tuple[float, float, float], ...] = (
    (75.0, 150.0, 63.0),
    (150.0, 330.0, 32.0),
    (330.0, 1000.0, 20.0),
    (1000.0, 2200.0, 13.0),
)
SHORT_OHM = 75.0
"""Below this PP is shorted to PE (or the cable is damaged)."""
OPEN_OHM = 10_000.0
"""Above this no cable is plugged in (the 1.5 kOhm of a 13 A cable reads far below it)."""


@dataclass(frozen=True)
class ProximityReading:
    """What the PP input says: a rating, no cable (both None/""), or a problem that forbids charging."""

    rating_a: float | None
    ohms: float | None
    """The measured Rc; None when the line is open (no cable)."""
    problem: str = ""

    @property
    def cable(self) -> str:
        """One word for people: "none", "13A".."63A" or "fault"."""
        if self.problem:
            return "fault"
        return "none" if self.rating_a is None else f"{self.rating_a:g}A"


def classify(ohms: float | None) -> ProximityReading:
    """The rating coded by ``ohms`` (None or above ``OPEN_OHM`` = open: no cable)."""
    if ohms is None or ohms > OPEN_OHM:
        return ProximityReading(None, None)
    if ohms < SHORT_OHM:
        return ProximityReading(None, ohms, f"PP reads {_ohms(ohms)}: shorted to PE (below {SHORT_OHM:g} Ohm)")
    for low, high, amps in CABLE_CODING:
        if low <= ohms <= high:
            return ProximityReading(amps, ohms)
    return ProximityReading(None, ohms, f"PP reads {_ohms(ohms)}: no valid cable rating (IEC 61851-1 codes "
                                        "100 Ohm 63 A, 220 Ohm 32 A, 680 Ohm 20 A, 1.5 kOhm 13 A)")


def resistance(fraction: float, pullup_ohm: float, supply_fraction: float = 1.0) -> float | None:
    """Rc from the PP voltage as a fraction of the ADC's reference; None when it reads the supply (open).

    ``supply_fraction`` is the pull-up supply as a fraction of the reference (1.0 when the
    pull-up runs from the ADC's own reference, the usual design).
    """
    if fraction >= supply_fraction * 0.999:
        return None
    return pullup_ohm * fraction / (supply_fraction - fraction)


def _ohms(ohms: float) -> str:
    return f"{ohms / 1000:.2f} kOhm" if ohms >= 1000 else f"{ohms:.0f} Ohm"


_ADC_CHIPS = ("mcp3004", "mcp3008", "mcp3202", "mcp3204", "mcp3208")


class AdcProximity:
    """The PP line on an MCP3xxx channel (gpiozero); implements ``evcp.hal.CableSensor``.

    ``read()`` takes the median of ``config.samples`` conversions, so one disturbed sample
    (a contactor switching nearby) cannot change the rating. ``adc`` replaces the chip (any
    object with ``raw_value`` and ``bits``, or ``max_raw``); an injected ADC stays the caller's.
    """

    def __init__(self, config: ProximityConfig, adc=None, pin_factory=None):
        if config.adc_chip not in _ADC_CHIPS:
            raise HardwareError(f"proximity pilot: unknown ADC chip {config.adc_chip!r}")
        self._config = config
        self._lock = threading.Lock()
        self._owns_adc = adc is None
        if adc is None:
            import gpiozero

            chip = getattr(gpiozero, config.adc_chip.upper())
            try:
                adc = chip(channel=config.adc_channel, port=config.spi_port, device=config.spi_device,
                           pin_factory=pin_factory)
            except Exception as exc:
                raise HardwareError(
                    f"proximity pilot ADC {config.adc_chip} on SPI{config.spi_port}.{config.spi_device} "
                    f"channel {config.adc_channel}: {exc}"
                ) from exc
        self._adc = adc
        self._max_raw = getattr(adc, "max_raw", None) or (1 << getattr(adc, "bits", 10)) - 1

    def read(self) -> ProximityReading:
        """Measure PP now (a few ms). Raises HardwareError when the ADC cannot be read."""
        with self._lock:
            adc = self._adc
            if adc is None:
                raise HardwareError("proximity pilot: released")
            try:
                raw = statistics.median(adc.raw_value for _ in range(self._config.samples))
            except Exception as exc:
                raise HardwareError(f"proximity pilot ADC cannot be read: {exc}") from exc
        config = self._config
        fraction = raw / self._max_raw
        return classify(resistance(fraction, config.pullup_ohm, config.supply_v / config.adc_vref_v))

    def release(self) -> None:
        """Close the ADC if this object opened it. Idempotent."""
        with self._lock:
            adc, self._adc = self._adc, None
        if adc is not None and self._owns_adc:
            try:
                adc.close()
            except Exception:
                log.exception("proximity pilot: could not close the ADC")
