"""SimulatedRc522 at register level, driven by raw SPI bytes as the datasheet frames them,
so the simulation is checked against the datasheet and ISO/IEC 14443-3, not against
evcp's driver."""

import pytest

from evcp.mocks.rc522_chip import NotSimulated, SimulatedCard, SimulatedRc522, crc_a

COMMAND, COM_IRQ, DIV_IRQ, ERROR, FIFO_DATA, FIFO_LEVEL = 0x01, 0x04, 0x05, 0x06, 0x09, 0x0A
CONTROL, BIT_FRAMING, COLL, MODE, TX_CONTROL, TX_ASK = 0x0C, 0x0D, 0x0E, 0x11, 0x14, 0x15
T_MODE, T_PRESCALER, T_RELOAD_H, T_RELOAD_L, VERSION = 0x2A, 0x2B, 0x2C, 0x2D, 0x37
RX_IRQ, TIMER_IRQ = 0x20, 0x01


class Spi:
    """Register access the way the datasheet's 8.1.2.3 frames it."""

    def __init__(self, chip):
        self.chip = chip
        chip.open(0, 1)
        chip.max_speed_hz = 1_000_000

    def read(self, register):
        return self.chip.xfer2([0x80 | register << 1, 0])[1]

    def write(self, register, *values):
        self.chip.xfer2([register << 1, *values])

    def setup(self, timer_ticks=40):
        """Field on, 100 % ASK, CRC preset 6363, TAuto at 25 us per tick, ValuesAfterColl 0."""
        self.write(T_MODE, 0x80)
        self.write(T_PRESCALER, 169)
        self.write(T_RELOAD_H, 0)
        self.write(T_RELOAD_L, timer_ticks - 1)
        self.write(TX_ASK, 0x40)
        self.write(MODE, 0x3D)
        self.write(COLL, 0x00)
        self.write(TX_CONTROL, 0x83)

    def exchange(self, frame, tx_last_bits=0, rx_align=0, polls=200):
        """Transceive; returns (ComIrqReg, ErrorReg, FIFO bytes, RxLastBits, CollReg)."""
        self.write(COMMAND, 0x00)
        self.write(COM_IRQ, 0x7F)
        self.write(FIFO_LEVEL, 0x80)
        self.write(FIFO_DATA, *frame)
        self.write(COMMAND, 0x0C)
        self.write(BIT_FRAMING, 0x80 | rx_align << 4 | tx_last_bits)
        for _ in range(polls):
            irq = self.read(COM_IRQ)
            if irq & (RX_IRQ | TIMER_IRQ):
                break
        count = self.read(FIFO_LEVEL)
        data = bytes(self.chip.xfer2([0x80 | FIFO_DATA << 1] * count + [0])[1:]) if count else b""
        return irq, self.read(ERROR), data, self.read(CONTROL) & 0x07, self.read(COLL)

    def reqa(self):
        return self.exchange([0x26], tx_last_bits=7)


@pytest.fixture
def chip():
    return SimulatedRc522()


@pytest.fixture
def spi(chip):
    spi = Spi(chip)
    spi.setup()
    return spi


def test_crc_a_matches_the_examples_of_iso_14443_3_annex_b():
    assert crc_a(bytes([0x00, 0x00])) == bytes([0xA0, 0x1E])
    assert crc_a(bytes([0x12, 0x34])) == bytes([0x26, 0xCF])
    assert crc_a(bytes([0x50, 0x00])) == bytes([0x57, 0xCD])  # HLTA


def test_spi_reads_return_one_byte_late_and_writes_fill_the_fifo(chip):
    spi = Spi(chip)
    assert chip.xfer2([0x80 | VERSION << 1, 0x80 | TX_CONTROL << 1, 0]) == [0, 0x92, 0x80]
    spi.write(FIFO_DATA, 1, 2, 3)
    assert spi.read(FIFO_LEVEL) == 3
    assert chip.xfer2([0x80 | FIFO_DATA << 1] * 3 + [0]) == [0, 1, 2, 3]
    spi.write(FIFO_DATA, 9)
    spi.write(FIFO_LEVEL, 0x80)
    assert spi.read(FIFO_LEVEL) == 0
    assert chip.transfers == 7


def test_it_opens_only_as_its_own_device_and_not_before_open():
    chip = SimulatedRc522(bus=0, device=1)
    with pytest.raises(OSError):
        chip.xfer2([0x80 | VERSION << 1, 0])
    with pytest.raises(FileNotFoundError):
        chip.open(0, 0)
    chip.open(0, 1)
    chip.close()
    assert not chip.is_open


def test_calc_crc_uses_the_preset_of_mode_reg(chip):
    spi = Spi(chip)
    for mode, expected in ((0x3D, crc_a(b"\x50\x00")), (0x3F, crc_a(b"\x50\x00", 0xFFFF))):
        spi.write(MODE, mode)
        spi.write(COMMAND, 0x00)  # Idle: while CalcCRC runs, FIFO bytes go on into the CRC
        spi.write(DIV_IRQ, 0x04)
        spi.write(FIFO_LEVEL, 0x80)
        spi.write(FIFO_DATA, 0x50, 0x00)
        spi.write(COMMAND, 0x03)
        assert spi.read(DIV_IRQ) & 0x04
        assert bytes([spi.read(0x22), spi.read(0x21)]) == expected


def test_reqa_gets_the_atqa_that_tells_the_uid_size(chip, spi):
    for uid, atqa in (("04A1B2C3", b"\x04\x00"), ("04A3C6CAE26180", b"\x44\x00"), ("04A3C6CAE26180AABBCC", b"\x84\x00")):
        chip.remove_all()
        chip.present(uid)
        irq, error, data, _, _ = spi.reqa()
        assert irq & RX_IRQ and not irq & TIMER_IRQ
        assert (error, data) == (0, atqa)


def test_without_a_card_the_timer_fires_after_its_period_in_chip_time(chip, spi):
    spi.write(COMMAND, 0x0C)
    spi.write(FIFO_DATA, 0x26)
    spi.write(BIT_FRAMING, 0x87)
    sent = chip.now
    while not (irq := spi.read(COM_IRQ)) & TIMER_IRQ:
        pass
    assert not irq & RX_IRQ
    # the REQA frame (9 bits of 9.44 us), then 40 ticks of 25 us; one read (46 us) to see it
    assert 85e-6 + 1e-3 <= chip.now - sent <= 85e-6 + 1e-3 + 47e-6


def test_without_tauto_the_timer_never_fires(chip, spi):
    spi.write(T_MODE, 0x00)
    irq, *_ = spi.reqa()
    assert irq & (TIMER_IRQ | RX_IRQ) == 0


def test_a_timer_shorter_than_the_frame_delay_misses_the_answer(chip, spi):
    chip.present("04A1B2C3")
    spi.write(T_RELOAD_L, 1)  # 50 us: before the card's answer starts (FDT about 91 us)
    irq, *_ = spi.reqa()
    assert irq & TIMER_IRQ


@pytest.mark.parametrize("setting", ["field off", "no 100 % ASK"])
def test_cards_hear_nothing_without_the_field_or_without_100_percent_ask(chip, spi, setting):
    chip.present("04A1B2C3")
    spi.write(*((TX_CONTROL, 0x80) if setting == "field off" else (TX_ASK, 0x00)))
    irq, *_ = spi.reqa()
    assert irq & TIMER_IRQ and not irq & RX_IRQ


def test_the_field_powers_the_cards(chip, spi):
    card = chip.present("04A1B2C3")
    assert card.state == "IDLE"
    spi.write(TX_CONTROL, 0x80)
    assert card.state == "POWER-OFF"
    spi.write(TX_CONTROL, 0x83)
    assert card.state == "IDLE"


def select_cl1(spi, uid_bytes):
    part = bytes(uid_bytes) + bytes([uid_bytes[0] ^ uid_bytes[1] ^ uid_bytes[2] ^ uid_bytes[3]])
    frame = bytes([0x93, 0x70]) + part
    return spi.exchange(frame + crc_a(frame))


def test_iso_14443_3_states_request_select_halt_and_wake(chip, spi):
    card = chip.present("DEADBEEF")
    spi.reqa()
    assert card.state == "READY"
    irq, error, data, _, _ = spi.exchange([0x93, 0x20])
    assert data == bytes.fromhex("DEADBEEF") + bytes([0xDE ^ 0xAD ^ 0xBE ^ 0xEF])
    _, _, sak, _, _ = select_cl1(spi, bytes.fromhex("DEADBEEF"))
    assert sak == b"\x08" + crc_a(b"\x08") and card.state == "ACTIVE"
    irq, *_ = spi.exchange(b"\x50\x00" + crc_a(b"\x50\x00"))
    assert irq & TIMER_IRQ and card.state == "HALT"  # HLTA is not answered
    assert spi.reqa()[0] & TIMER_IRQ  # a halted card ignores REQA
    assert spi.exchange([0x52], tx_last_bits=7)[2] == b"\x04\x00"  # and answers WUPA
    assert card.state == "READY" and card.from_halt


def test_a_card_in_ready_goes_back_to_idle_on_an_unexpected_command(chip, spi):
    card = chip.present("DEADBEEF")
    spi.reqa()
    assert spi.reqa()[0] & TIMER_IRQ  # REQA in READY: back to IDLE, no answer
    assert card.state == "IDLE"
    assert spi.reqa()[2] == b"\x04\x00"


def test_a_select_with_a_wrong_crc_is_ignored(chip, spi):
    card = chip.present("DEADBEEF")
    spi.reqa()
    frame = bytes([0x93, 0x70]) + bytes.fromhex("DEADBEEF") + bytes([0xDE ^ 0xAD ^ 0xBE ^ 0xEF])
    irq, *_ = spi.exchange(frame + b"\x00\x00")
    assert irq & TIMER_IRQ and card.state == "READY"


def test_cascade_levels_of_a_seven_byte_uid(chip, spi):
    card = chip.present("04A3C6CAE26180")
    spi.reqa()
    _, _, cl1, _, _ = spi.exchange([0x93, 0x20])
    assert cl1 == bytes([0x88, 0x04, 0xA3, 0xC6, 0x88 ^ 0x04 ^ 0xA3 ^ 0xC6])
    frame = bytes([0x93, 0x70]) + cl1
    assert spi.exchange(frame + crc_a(frame))[2] == b"\x04" + crc_a(b"\x04")  # cascade bit
    _, _, cl2, _, _ = spi.exchange([0x95, 0x20])
    assert cl2[:4] == bytes.fromhex("CAE26180")
    frame = bytes([0x95, 0x70]) + cl2
    assert spi.exchange(frame + crc_a(frame))[2] == b"\x00" + crc_a(b"\x00")
    assert card.state == "ACTIVE"


def test_two_cards_collide_at_the_first_differing_bit_and_later_bits_read_0(chip, spi):
    chip.present("00000001")  # UID bit 0 = 1
    chip.present("00000003")  # bits 0 and 1 = 1: they differ first at bit 1 (LSB first)
    irq, error, atqa, _, _ = spi.reqa()
    assert atqa == b"\x04\x00" and not error & 0x08  # same ATQA: no collision there
    irq, error, data, last_bits, coll = spi.exchange([0x93, 0x20])
    # the UIDs are sent 00 00 00 01 / 00 00 00 03: byte 3 differs in its bit 1, bit 25 overall
    assert error & 0x08
    assert coll & 0x1F == 26 and not coll & 0x20  # CollPos counts from 1
    assert data[3] == 0x01 and data[4] == 0x00  # bit 25 and everything after it cleared


def test_collision_position_counts_from_bit_0_of_the_fifo_with_rx_align(chip, spi):
    chip.present("00000001")
    chip.present("00000003")
    spi.reqa()
    # 3 known bits (all 0) of byte 0: NVB 0x23, RxAlign 3; the answer starts at UID bit 3
    irq, error, data, last_bits, coll = spi.exchange([0x93, 0x23, 0x00], tx_last_bits=3, rx_align=3)
    assert error & 0x08
    assert coll & 0x1F == 26  # still UID bit 25: FIFO bit 25, the RxAlign bits included
    assert data[0] & 0x07 == 0  # the RxAlign bits hold nothing


@pytest.mark.parametrize(("byte3_bits", "bcc"), [(0b11, 0x03), (0b01, 0x01)])
def test_only_the_card_matching_the_known_bits_answers(chip, spi, byte3_bits, bcc):
    chip.present("00000001")
    chip.present("00000003")
    spi.reqa()
    # 26 known bits: bytes 00 00 00, then bits 24 and 25 (NVB 0x52: 5 bytes and 2 bits)
    irq, error, data, last_bits, _ = spi.exchange([0x93, 0x52, 0, 0, 0, byte3_bits], tx_last_bits=2, rx_align=2)
    assert not error & 0x08
    assert data == bytes([0x00, bcc]) and last_bits == 0  # bits 26-31 of byte 3 (at RxAlign 2), then BCC


def test_an_injected_crc_error_corrupts_one_sak(chip, spi):
    chip.present("DEADBEEF")
    chip.inject_crc_error()
    spi.reqa()
    spi.exchange([0x93, 0x20])
    sak = select_cl1(spi, bytes.fromhex("DEADBEEF"))[2]
    assert sak[:1] == b"\x08" and sak[1:] != crc_a(b"\x08")
    chip.card("DEADBEEF").power(True)
    spi.reqa()
    spi.exchange([0x93, 0x20])
    assert select_cl1(spi, bytes.fromhex("DEADBEEF"))[2] == b"\x08" + crc_a(b"\x08")


def test_an_injected_bit_error_breaks_the_bcc_once(chip, spi):
    chip.present("DEADBEEF")
    chip.inject_bit_error()
    spi.reqa()
    data = spi.exchange([0x93, 0x20])[2]
    assert data[0] ^ data[1] ^ data[2] ^ data[3] != data[4]


@pytest.mark.parametrize("reads", [0x00, 0xFF])
def test_a_disconnected_chip_reads_one_value_and_comes_back_reset(chip, spi, reads):
    chip.disconnect(reads)
    assert spi.read(VERSION) == reads and spi.read(COM_IRQ) == reads
    assert not chip.field_on
    chip.reconnect()
    assert spi.read(VERSION) == 0x92
    assert spi.read(TX_CONTROL) == 0x80 and spi.read(T_MODE) == 0x00  # register reset values


def test_soft_reset_restores_the_reset_values(chip, spi):
    spi.write(COMMAND, 0x0F)
    assert spi.read(TX_CONTROL) == 0x80 and spi.read(MODE) == 0x3F and spi.read(COMMAND) & 0x10 == 0


def test_features_it_does_not_have_are_refused(chip, spi):
    with pytest.raises(NotSimulated):
        spi.write(COMMAND, 0x0E)  # MFAuthent
    spi.write(0x12, 0x80)  # TxCRCEn
    with pytest.raises(NotSimulated):
        spi.reqa()


def test_cards_check_their_uid():
    with pytest.raises(ValueError):
        SimulatedCard("04A1B2")
    with pytest.raises(ValueError):
        SimulatedCard("04A1B2C3", sak=0x04)
    card = SimulatedCard("04A3C6CAE26180AABBCC")
    assert [level[:4].hex() for level in card.levels] == ["8804a3c6", "88cae261", "80aabbcc"]
    assert all(level[4] == level[0] ^ level[1] ^ level[2] ^ level[3] for level in card.levels)


def test_verbs_are_recorded(chip):
    chip.present("04A1B2C3")
    chip.present("04A1B2C3")
    chip.remove("04A1B2C3")
    chip.disconnect()
    chip.reconnect()
    assert [event for _, event in chip.history] == [
        "present 04A1B2C3", "remove 04A1B2C3", "disconnect, reads 0x00", "reconnect"]
    with pytest.raises(KeyError):
        chip.remove("04A1B2C3")
