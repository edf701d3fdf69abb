"""A simulated control-pilot line behind a simulated MCP3008 (or MCP3208), for ``AdcPilot``.

The EVSE side is read from a ``FakeSysfsPwm`` channel: the duty the driver
wrote (``invert`` for a CP driver whose output is -12 V while the pin is
high; a channel not exported or not enabled leaves the pin low). It drives
+-12 V behind the 1 kOhm source resistor of IEC 61851-1 Annex A.

The EV side is three callables, asked at every sample, so any EV model can
plug in:

- ``ev_resistance_ohm() -> float | None``: the resistance CP-PE behind the EV's
  diode (2740 B, 882 C, 246 D: ``EV_RESISTANCE_OHM``); None = no EV;
- ``diode_present() -> bool``: False = the diode is missing or shorted, the
  resistor then loads the negative half too (B without diode: -8.8 V);
- ``cp_shorted() -> bool``: CP shorted to PE (0 V on both levels, state E).

``SimulatedCpAdc.raw_value`` is the ADC's count for the CP voltage at the
moment of the read: the 1 kHz waveform at a random phase, each edge settling
with time constant ``edge_tau_s`` (so some samples fall on an edge), plus
Gaussian noise of ``noise_v``, through the divider ``volts = raw *
volts_per_count + offset_v`` (the pilot config's keys), clamped to the
chip's range (``bits`` 10 for MCP300x, 12 for MCP320x). ``glitch(volts)``
makes the next reads return a level of its choosing (an outlier).

Time: by default the waveform runs on the real clock (``time.perf_counter``);
``conversion_s`` makes each read last at least that long, as a real SPI
transfer does. With ``sample_spacing_s`` (a callable returning seconds) the
simulator keeps a time of its own instead, advanced by that spacing at each
read (e.g. ``lambda: rng.uniform(80e-6, 120e-6)``): give ``adc.clock`` to
``AdcPilot(clock=...)`` so its blanking runs on the same time, and
``advance(seconds)`` to let time pass between bursts.
"""

from __future__ import annotations

import math
import random
import threading
import time
from typing import Callable

from evcp.mocks.sysfs_pwm import FakeSysfsPwm

SOURCE_OHM = 1000.0
"""The EVSE's source resistor (IEC 61851-1 Annex A)."""
DRIVER_V = 12.0
DIODE_DROP_V = 0.7
"""The EV diode's forward drop: 12 V into 2.74 kOhm through 1 kOhm then reads 8.98 V (B)."""
EV_RESISTANCE_OHM = {"B": 2740.0, "C": 882.0, "D": 246.0}
"""R2 and R2 || R3 of IEC 61851-1 Annex A (2.74k; 2.74k || 1.3k; 2.74k || 270)."""
PERIOD_S = 0.001
DUTY_REFRESH_S = 0.001
"""How often (in waveform time) the PWM's sysfs files are read again."""


def cp_level_v(driver_v: float, ev_resistance_ohm: float | None, diode_present: bool = True,
               cp_shorted: bool = False) -> float:
    """The CP voltage while the EVSE drives ``driver_v`` (+12 or -12) into the EV."""
    if cp_shorted:
        return 0.0
    if ev_resistance_ohm is None:
        return driver_v
    share = ev_resistance_ohm / (ev_resistance_ohm + SOURCE_OHM)
    if not diode_present:
        return driver_v * share
    if driver_v <= DIODE_DROP_V:
        return driver_v  # the diode blocks: no current, no drop across the source resistor
    return DIODE_DROP_V + (driver_v - DIODE_DROP_V) * share


class SimulatedCpAdc:
    """An MCP3008/MCP3208 channel that reads a simulated CP line; see the module docstring."""

    def __init__(
        self,
        pwm: FakeSysfsPwm,
        channel: int = 0,
        *,
        chip: int | None = None,
        invert: bool = False,
        ev_resistance_ohm: Callable[[], float | None] = lambda: None,
        diode_present: Callable[[], bool] = lambda: True,
        cp_shorted: Callable[[], bool] = lambda: False,
        volts_per_count: float = 24.0 / 1023,
        offset_v: float = -12.0,
        bits: int = 10,
        noise_v: float = 0.03,
        edge_tau_s: float = 5e-6,
        sample_spacing_s: Callable[[], float] | None = None,
        conversion_s: float = 0.0,
        seed: int | None = None,
    ):
        self._pwm, self._channel, self._chip, self._invert = pwm, channel, chip, invert
        self.ev_resistance_ohm = ev_resistance_ohm
        self.diode_present = diode_present
        self.cp_shorted = cp_shorted
        self.volts_per_count, self.offset_v, self.bits = volts_per_count, offset_v, bits
        self.noise_v, self.edge_tau_s = noise_v, edge_tau_s
        self._spacing, self._conversion_s = sample_spacing_s, conversion_s
        self._rng = random.Random(seed)
        self._phase_origin = self._rng.uniform(0.0, PERIOD_S)
        self._lock = threading.Lock()
        self._now = 0.0
        self._duty_read_at = -math.inf
        self._duty = 0.0
        self._glitches: list[float] = []
        self.reads = 0

    @property
    def max_raw(self) -> int:
        return 2**self.bits - 1

    def clock(self) -> float:
        """The time samples are taken at, in seconds (pass it to ``AdcPilot(clock=...)``)."""
        if self._spacing is None:
            return time.perf_counter()
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        """Let simulated time pass without sampling (only with ``sample_spacing_s``)."""
        if self._spacing is None:
            raise RuntimeError("advance() needs sample_spacing_s: this simulator runs on the real clock")
        with self._lock:
            self._now += seconds

    def glitch(self, volts: float, count: int = 1) -> None:
        """The next ``count`` reads return ``volts`` (plus noise) instead of the waveform."""
        with self._lock:
            self._glitches.extend([volts] * count)

    def cp_volts(self, at: float) -> float:
        """The CP voltage at time ``at`` without noise."""
        high = cp_level_v(DRIVER_V, self.ev_resistance_ohm(), self.diode_present(), self.cp_shorted())
        low = cp_level_v(-DRIVER_V, self.ev_resistance_ohm(), self.diode_present(), self.cp_shorted())
        duty = self._duty_at(at)
        if duty >= 1.0:
            return high
        if duty <= 0.0:
            return low
        phase = (at - self._phase_origin) % PERIOD_S
        high_s = duty * PERIOD_S
        tau = max(self.edge_tau_s, 1e-12)
        if phase < high_s:  # rising edge at phase 0, settling towards the high level
            return high + (low - high) * math.exp(-phase / tau)
        return low + (high - low) * math.exp(-(phase - high_s) / tau)

    @property
    def raw_value(self) -> int:
        """The count for the CP voltage now (0 .. 2**bits - 1)."""
        with self._lock:
            if self._spacing is not None:
                self._now += self._spacing()
                at = self._now
            else:
                at = time.perf_counter()
            glitch = self._glitches.pop(0) if self._glitches else None
            self.reads += 1
        volts = glitch if glitch is not None else self.cp_volts(at)
        volts += self._rng.gauss(0.0, self.noise_v) if self.noise_v else 0.0
        raw = round((volts - self.offset_v) / self.volts_per_count)
        if self._conversion_s and self._spacing is None:
            while time.perf_counter() - at < self._conversion_s:
                pass
        return min(self.max_raw, max(0, raw))

    @property
    def value(self) -> float:
        """As gpiozero's ``value``: raw / full scale."""
        return self.raw_value / self.max_raw

    def close(self) -> None:
        """Nothing to free; here so it can stand in for a gpiozero ADC."""

    def _duty_at(self, at: float) -> float:
        if at - self._duty_read_at >= DUTY_REFRESH_S or at < self._duty_read_at:
            state = self._pwm.channel(self._channel, self._chip)
            pin_duty = state.duty if state.exported and state.enabled and state.duty is not None else 0.0
            self._duty = 1.0 - pin_duty if self._invert else pin_duty
            self._duty_read_at = at
        return self._duty


__all__ = ["EV_RESISTANCE_OHM", "SimulatedCpAdc", "cp_level_v"]
