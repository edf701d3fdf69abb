"""The RC522 driver and the ISO/IEC 14443-3 card protocol, over the register-level simulated chip."""

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from evcp.hal.rc522 import CHIP_DEADLINE_S, RESPONSE_TIMEOUT_S, ChipError, Rc522, describe_version
from evcp.mocks.rc522_chip import SimulatedRc522

#: SPI transfers of one poll with no card: one REQA answered by the chip's timer (1 ms)
#: plus the field on and off. mfrc522 0.0.7 needed 2013 for the same (hal-realism.md #12).
EMPTY_SCAN_TRANSFERS = 32


def open_chip(**kwargs) -> tuple[SimulatedRc522, Rc522]:
    chip = SimulatedRc522(**kwargs)
    chip.open(0, 1)
    chip.max_speed_hz = 1_000_000
    driver = Rc522(chip)
    driver.soft_reset()
    driver.configure()
    return chip, driver


@pytest.fixture
def rc522():
    return open_chip()


def hex_uids(uids):
    return [uid.hex().upper() for uid in uids]


def sel_codes(chip):
    return [entry.split()[1] for entry in chip.rf_log if entry.startswith("SELECT")]


@pytest.mark.parametrize(("uid", "levels"), [
    ("04A1B2C3", ["0x93"]),
    ("04A3C6CAE26180", ["0x93", "0x95"]),
    ("04A3C6CAE26180AABBCC", ["0x93", "0x95", "0x97"]),
])
def test_a_card_of_each_uid_length_is_read_whole(rc522, uid, levels):
    chip, driver = rc522
    chip.present(uid)
    assert hex_uids(driver.scan()) == [uid]
    assert sel_codes(chip) == levels
    assert list(chip.rf_log)[-2:] == ["HLTA", "REQA"]  # halted, then nobody else answers
    assert chip.card(uid).state == "POWER-OFF" and not chip.field_on  # the field is off between polls


def test_a_four_byte_uid_starting_with_the_cascade_tag_is_complete_by_its_sak(rc522):
    chip, driver = rc522
    chip.present("88112233")
    assert hex_uids(driver.scan()) == ["88112233"]
    assert sel_codes(chip) == ["0x93"]


def test_two_seven_byte_cards_with_the_same_first_three_bytes_stay_apart(rc522):
    # The pair that mfrc522 0.0.7 read as the same idTag 8804A3C6 (hal-realism.md #3).
    chip, driver = rc522
    chip.present("04A3C6CAE26180")
    chip.present("04A3C6112233AA")
    assert sorted(hex_uids(driver.scan())) == ["04A3C6112233AA", "04A3C6CAE26180"]


def test_three_cards_of_three_sizes_are_each_read(rc522):
    chip, driver = rc522
    for uid in ("DEADBEEF", "04A3C6CAE26180", "04A3C6CAE26180AABBCC"):
        chip.present(uid)
    assert sorted(hex_uids(driver.scan())) == ["04A3C6CAE26180", "04A3C6CAE26180AABBCC", "DEADBEEF"]
    assert chip.rf_log.count("HLTA") == 3


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.sampled_from([4, 7, 10]).flatmap(lambda n: st.binary(min_size=n, max_size=n)),
                min_size=1, max_size=4, unique=True))
def test_any_few_cards_are_each_read_once(uids):
    # A single-size UID may not start with the cascade tag and collide with a longer UID's
    # first level (ISO/IEC 14443-3 6.5.4 keeps 0x88 out of uid0 for that reason).
    level1 = [uid[:4] if len(uid) == 4 else b"\x88" + uid[:3] for uid in uids]
    assume(len(set(level1)) == len(level1) or all(len(uid) > 4 for uid in uids))
    chip, driver = open_chip()
    for uid in uids:
        chip.present(uid)
    assert sorted(driver.scan()) == sorted(uids)


def test_a_crc_error_leaves_that_card_out_of_one_scan_and_hides_no_other(rc522):
    chip, driver = rc522
    chip.present("DEADBEEF")  # wins the anticollision against 04A1B2C3 (bit 1 of byte 0)
    chip.present("04A1B2C3")
    chip.inject_crc_error("DEADBEEF", count=2)
    assert hex_uids(driver.scan()) == ["04A1B2C3"]
    assert hex_uids(driver.scan()) == ["04A1B2C3"]
    assert hex_uids(driver.scan()) == ["DEADBEEF", "04A1B2C3"]


def test_a_uid_with_a_bit_error_is_never_reported(rc522):
    chip, driver = rc522
    chip.present("04A3C6CAE26180")
    chip.inject_bit_error(count=1000)
    assert driver.scan() == []
    chip.card("04A3C6CAE26180").bit_errors = 0
    assert hex_uids(driver.scan()) == ["04A3C6CAE26180"]


def test_a_single_bit_error_is_read_again_within_the_scan(rc522):
    chip, driver = rc522
    chip.present("04A3C6CAE26180")
    chip.inject_bit_error()
    assert hex_uids(driver.scan()) == ["04A3C6CAE26180"]
    assert chip.rf_log.count("ANTICOLLISION 0x93 0 bits") == 2


def test_an_empty_scan_costs_a_few_spi_transfers_bounded_by_the_chip_timer(rc522):
    chip, driver = rc522
    before = chip.transfers
    assert driver.scan() == []
    assert chip.transfers - before == EMPTY_SCAN_TRANSFERS


def test_with_the_fastest_spi_the_wait_is_still_bounded_by_the_timer():
    chip, driver = open_chip(transfer_overhead_s=0.0)  # 16 us per 2-byte transfer at 1 MHz
    before = chip.transfers
    driver.scan()
    waits = chip.transfers - before - (EMPTY_SCAN_TRANSFERS - 24)
    assert waits <= RESPONSE_TIMEOUT_S / 16e-6 + 10


@pytest.mark.parametrize("reads", [0x00, 0xFF])
def test_a_chip_gone_mid_scan_is_a_chip_error(rc522, reads):
    chip, driver = rc522
    chip.disconnect(reads)
    with pytest.raises(ChipError):
        driver.scan()


def test_a_chip_that_lost_its_settings_never_fires_its_timer():
    chip, driver = open_chip()
    chip.reconnect()  # a power cycle: TAuto and the timer reload are gone
    with pytest.raises(ChipError, match="timer"):
        driver.scan()
    assert CHIP_DEADLINE_S <= 0.05


def test_crc_a_comes_from_the_chip(rc522):
    chip, driver = rc522
    assert driver.crc_a(b"\x50\x00") == bytes([0x57, 0xCD])


@pytest.mark.parametrize(("version", "name"), [
    (0x92, "MFRC522 v2.0"), (0x91, "MFRC522 v1.0"), (0x88, "FM17522"), (0xB2, "FM17522"),
    (0x12, "counterfeit"), (0x00, "nothing answers"), (0xFF, "nothing answers"), (0x42, "unknown"),
])
def test_versions_are_named(version, name):
    assert name in describe_version(version)
