"""Cost of one RC522 poll: SPI transfers and time, over the register-level simulated chip.
Prints numbers; asserts nothing.

    python benchmarks/reader_poll.py [--polls N]

For each field (no card, one card of 4, 7 and 10 bytes, two and three cards at once):
  * SPI transfers per poll (VersionReg check + one Rc522.scan), exact: the simulated chip
    counts them and its timer runs on the time the transfers take (1 MHz, 30 us each);
  * chip time per poll: what that SPI traffic costs on the bus;
  * host time per poll (p50/p99) of the driver plus the simulation on this machine, without
    the 5 ms wait for the cards after the field comes on.
mfrc522 0.0.7 needed 2013 transfers for one poll with no card (hal-realism.md #12).
"""

from __future__ import annotations

import argparse
import statistics
import time

import evcp.hal.rc522 as rc522
from evcp.hal.rc522 import Rc522
from evcp.mocks.rc522_chip import SimulatedRc522

FIELDS = {
    "no card": [],
    "one 4-byte card": ["04A1B2C3"],
    "one 7-byte card": ["04A3C6CAE26180"],
    "one 10-byte card": ["04A3C6CAE26180AABBCC"],
    "two 7-byte cards, same first level": ["04A3C6CAE26180", "04A3C6112233AA"],
    "three cards (4, 7, 10 bytes)": ["DEADBEEF", "04A3C6CAE26180", "04A3C6CAE26180AABBCC"],
}


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--polls", type=int, default=200)
    args = parser.parse_args()
    rc522.FIELD_GUARD_S = 0.0  # measure the work, not the sleep
    print(f"RC522 poll over the simulated chip, {args.polls} polls per field:")
    print(f"  {'field':38} {'transfers':>9} {'chip ms':>8} {'host ms p50':>12} {'p99':>7}")
    for name, uids in FIELDS.items():
        chip = SimulatedRc522()
        chip.open(0, 1)
        chip.max_speed_hz = 1_000_000
        driver = Rc522(chip)
        driver.soft_reset()
        driver.configure()
        for uid in uids:
            chip.present(uid)
        transfers, chip_s, host_s = [], [], []
        for _ in range(args.polls):
            before, chip_before, started = chip.transfers, chip.now, time.perf_counter()
            driver.version()
            found = driver.scan()
            host_s.append(time.perf_counter() - started)
            transfers.append(chip.transfers - before)
            chip_s.append(chip.now - chip_before)
            assert len(found) == len(uids), (name, found)
        print(f"  {name:38} {statistics.mean(transfers):9.0f} {statistics.mean(chip_s) * 1e3:8.2f} "
              f"{percentile(host_s, 0.5) * 1e3:12.2f} {percentile(host_s, 0.99) * 1e3:7.2f}")


if __name__ == "__main__":
    main()
