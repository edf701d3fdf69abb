"""The NXP MFRC522 ("RC522") contactless reader chip on SPI, and the ISO/IEC 14443-3 type A
protocol it speaks to cards: request, anticollision, select and halt.

``Rc522`` takes an open SPI device with the ``spidev.SpiDev`` interface
(``xfer2``) and nothing else, so it runs unchanged over the simulated chip in
``evcp.mocks.rc522_chip``. Register and bit names are the datasheet's
(MFRC522 Rev. 3.9, section 9); ISO/IEC 14443-3 is the 2011 edition.

What one ``scan()`` does, and why:

- The RF field is switched on, and off again at the end. Off between polls it
  saves power and heat, and every card starts the next poll powered up afresh
  in IDLE, so each scan is a fresh inventory of the cards on the antenna.
- REQA, then per cascade level (SEL 0x93, 0x95, 0x97) ANTICOLLISION with
  bit-oriented collision resolution through CollReg, then SELECT with CRC_A.
  Whether the UID goes on to the next level is decided by the SAK's cascade
  bit (0x04), not by the first byte being the cascade tag 0x88: a complete
  4-byte UID may start with 0x88. The BCC of every level is checked.
- HLTA after each card, so the next REQA finds the next card: several cards
  on the antenna are each read, none hides another.
- Every exchange is bounded by the chip's own timer (TimerIRq, 1 ms); a
  wall-clock deadline only catches a chip whose timer never runs at all.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from evcp.hal import HardwareError

log = logging.getLogger("evcp.hal.rc522")

# -- registers (datasheet 9.2) ------------------------------------------------------
COMMAND_REG = 0x01
COM_IRQ_REG = 0x04
DIV_IRQ_REG = 0x05
ERROR_REG = 0x06
FIFO_DATA_REG = 0x09
FIFO_LEVEL_REG = 0x0A
CONTROL_REG = 0x0C
BIT_FRAMING_REG = 0x0D
COLL_REG = 0x0E
MODE_REG = 0x11
TX_MODE_REG = 0x12
RX_MODE_REG = 0x13
TX_CONTROL_REG = 0x14
TX_ASK_REG = 0x15
CRC_RESULT_REG_H = 0x21
CRC_RESULT_REG_L = 0x22
T_MODE_REG = 0x2A
T_PRESCALER_REG = 0x2B
T_RELOAD_REG_H = 0x2C
T_RELOAD_REG_L = 0x2D
VERSION_REG = 0x37

# -- commands (CommandReg, datasheet 10.3) ------------------------------------------
IDLE = 0x00
CALC_CRC = 0x03
TRANSCEIVE = 0x0C
SOFT_RESET = 0x0F
POWER_DOWN = 0x10  # CommandReg bit 4: set while the chip is (still) in soft power-down

# -- register bits ---------------------------------------------------------------
TIMER_IRQ, ERR_IRQ, IDLE_IRQ, RX_IRQ = 0x01, 0x02, 0x10, 0x20  # ComIrqReg
CRC_IRQ = 0x04  # DivIrqReg
PROTOCOL_ERR, PARITY_ERR, CRC_ERR, COLL_ERR, BUFFER_OVFL, TEMP_ERR = 0x01, 0x02, 0x04, 0x08, 0x10, 0x40
FLUSH_BUFFER = 0x80  # FIFOLevelReg
START_SEND = 0x80  # BitFramingReg
COLL_POS_NOT_VALID = 0x20  # CollReg
TX_RF_ON = 0x03  # TxControlReg: Tx1RFEn and Tx2RFEn
FORCE_100_ASK = 0x40  # TxASKReg: type A needs 100 % ASK (ISO/IEC 14443-2)
T_AUTO = 0x80  # TModeReg: the timer starts at the end of each transmission
CRC_PRESET_6363 = 0x01  # ModeReg CRCPreset: CRC_A starts at 0x6363 (ISO/IEC 14443-3 6.2.4)

#: TModeReg/TPrescalerReg: 13.56 MHz / (2 * 169 + 1) = 40 kHz, 25 us per tick.
TIMER_PRESCALER = 169
#: Ticks before TimerIRq, counted from the end of each frame sent: 40 ticks = 1 ms. A card
#: answers REQA, ANTICOLLISION and SELECT after its frame delay time of about 0.09 ms
#: (ISO/IEC 14443-3 6.2.1: 1236/fc), and HLTA counts as acknowledged when nothing has
#: answered within 1 ms (6.4.3), so one timer serves every exchange.
RESPONSE_TIMEOUT_TICKS = 40
RESPONSE_TIMEOUT_S = (2 * TIMER_PRESCALER + 1) * RESPONSE_TIMEOUT_TICKS / 13.56e6

#: Only a chip whose timer never runs takes this long: unplugged, held in reset, not configured.
CHIP_DEADLINE_S = 0.05
#: A card accepts a request at the latest 5 ms after the field comes on (ISO/IEC 14443-3 5.1).
FIELD_GUARD_S = 0.005
#: Soft reset: the oscillator restarts; the datasheet (8.8.2) gives crystal start-up + 37.74 us.
SOFT_RESET_DEADLINE_S = 0.05

# -- ISO/IEC 14443-3 type A --------------------------------------------------------
REQA = 0x26  # short frame, 7 bits
WUPA = 0x52
CASCADE_LEVELS = (0x93, 0x95, 0x97)  # SEL codes of cascade levels 1, 2, 3
CASCADE_TAG = 0x88  # CT: the UID continues at the next level (if the SAK says so)
SAK_CASCADE_BIT = 0x04  # SAK b3: UID not complete
HLTA = bytes([0x50, 0x00])
SELECT_NVB = 0x70  # 7 valid bytes: SEL, NVB, 4 UID bytes, BCC (then CRC_A)

#: Genuine chips (VersionReg, datasheet 9.3.4.8).
GENUINE_VERSIONS = {0x91: "MFRC522 v1.0", 0x92: "MFRC522 v2.0"}
#: Other chips on RC522 modules that answer the same registers; they work, with a warning.
CLONE_VERSIONS = {
    0x88: "FM17522 (Fudan Semiconductor clone)",
    0x89: "FM17522E (Fudan Semiconductor clone)",
    0xB2: "FM17522 (Fudan Semiconductor clone, variant)",
    0x12: "counterfeit MFRC522",
    0x90: "MFRC522 v0.0 (pre-production silicon)",
}
#: What VersionReg reads when nothing answers on the bus (MISO held low, or floating high).
ABSENT_VERSIONS = (0x00, 0xFF)


class ChipError(HardwareError):
    """The RC522 itself does not work: it is absent, its timer never fires, it overheated."""


class CardError(Exception):
    """A card's answer could not be used (collision left unresolved, CRC_A or BCC wrong, the
    card left mid-way). Nothing is wrong with the reader: the next poll tries again."""


def describe_version(version: int) -> str:
    """What a VersionReg value means, for logs and ``evcp check-hardware``."""
    if version in GENUINE_VERSIONS:
        return GENUINE_VERSIONS[version]
    if version in CLONE_VERSIONS:
        return CLONE_VERSIONS[version]
    if version in ABSENT_VERSIONS:
        return "nothing answers on the SPI bus"
    return "unknown chip"


@dataclass(frozen=True)
class Reply:
    """What the chip received: the FIFO bytes, how many bits of the last byte are valid
    (ControlReg RxLastBits, 0 = all 8) and, after a bit collision, the index (from 0, counted
    from bit 0 of the first FIFO byte, RxAlign included) of the first collided bit."""

    data: bytes
    last_bits: int = 0
    collision_at: int | None = None

    @property
    def bit_count(self) -> int:
        """Bits in the FIFO, counted from bit 0 of the first byte."""
        return len(self.data) * 8 - ((8 - self.last_bits) % 8)


class Rc522:
    """One MFRC522 behind ``spi`` (an open ``spidev.SpiDev``-like object)."""

    def __init__(self, spi):
        self._spi = spi
        self._hlta_frame: bytes | None = None

    # -- registers (SPI framing, datasheet 8.1.2.3) ---------------------------------

    def read(self, register: int) -> int:
        return self._spi.xfer2([0x80 | (register << 1), 0])[1]

    def write(self, register: int, value: int) -> None:
        self._spi.xfer2([register << 1, value])

    def _write_fifo(self, data: bytes) -> None:
        # Every data byte after the address goes to the same register.
        self._spi.xfer2([FIFO_DATA_REG << 1, *data])

    def _read_fifo(self, count: int) -> bytes:
        address = 0x80 | (FIFO_DATA_REG << 1)
        return bytes(self._spi.xfer2([address] * count + [0])[1:])

    # -- the chip --------------------------------------------------------------------

    def version(self) -> int:
        """VersionReg: 0x91/0x92 genuine, see ``CLONE_VERSIONS``; 0x00 or 0xFF when absent."""
        return self.read(VERSION_REG)

    def soft_reset(self) -> None:
        """SoftReset: every register back to its reset value; waits until the chip is up."""
        self.write(COMMAND_REG, SOFT_RESET)
        deadline = time.monotonic() + SOFT_RESET_DEADLINE_S
        time.sleep(0.001)
        while self.read(COMMAND_REG) & POWER_DOWN:
            if time.monotonic() > deadline:
                raise ChipError("RC522 did not come out of its soft reset")
            time.sleep(0.001)

    def configure(self) -> None:
        """Settings for ISO/IEC 14443 type A at 106 kbit/s, with the RF field off."""
        self.write(TX_CONTROL_REG, 0x80)  # reset value: both antenna drivers off
        self.write(TX_MODE_REG, 0x00)  # 106 kbit/s, no hardware CRC: CRC_A is added per frame
        self.write(RX_MODE_REG, 0x00)
        self.write(T_MODE_REG, T_AUTO | (TIMER_PRESCALER >> 8))
        self.write(T_PRESCALER_REG, TIMER_PRESCALER & 0xFF)
        self.write(T_RELOAD_REG_H, (RESPONSE_TIMEOUT_TICKS - 1) >> 8)
        self.write(T_RELOAD_REG_L, (RESPONSE_TIMEOUT_TICKS - 1) & 0xFF)
        self.write(TX_ASK_REG, FORCE_100_ASK)
        self.write(MODE_REG, 0x3C | CRC_PRESET_6363)  # TxWaitRF, PolMFin (reset value) with preset 0x6363
        self.write(COLL_REG, 0x00)  # ValuesAfterColl = 0: bits after a collision read as 0
        self._hlta_frame = None

    def antenna(self, on: bool) -> None:
        """Switch the 13.56 MHz field on or off (TxControlReg Tx1RFEn, Tx2RFEn)."""
        self.write(TX_CONTROL_REG, 0x80 | (TX_RF_ON if on else 0))

    def transceive(self, data: bytes, tx_last_bits: int = 0, rx_align: int = 0) -> Reply | None:
        """Send ``data`` (the last byte's low ``tx_last_bits`` bits only, 0 = all) and return the
        answer, or None when nothing answered before the timer ran out.

        Raises CardError for a garbled answer, ChipError when the chip misbehaves.
        """
        self.write(COMMAND_REG, IDLE)
        self.write(COM_IRQ_REG, 0x7F)  # Set1 = 0: clear every interrupt request bit
        self.write(FIFO_LEVEL_REG, FLUSH_BUFFER)
        self._write_fifo(data)
        self.write(COMMAND_REG, TRANSCEIVE)
        self.write(BIT_FRAMING_REG, START_SEND | (rx_align << 4) | tx_last_bits)
        irq = self._wait(COM_IRQ_REG, RX_IRQ | IDLE_IRQ | TIMER_IRQ, "the RC522's timer never fired")
        if not irq & (RX_IRQ | IDLE_IRQ):
            return None
        error = self.read(ERROR_REG)
        if error & TEMP_ERR:
            raise ChipError("RC522 overheated: its antenna drivers are off (ErrorReg TempErr)")
        if error & (BUFFER_OVFL | PARITY_ERR | PROTOCOL_ERR):
            raise CardError(f"garbled answer (ErrorReg {error:#04x})")
        count = self.read(FIFO_LEVEL_REG) & 0x7F
        received = self._read_fifo(count) if count else b""
        last_bits = self.read(CONTROL_REG) & 0x07
        collision_at = None
        if error & COLL_ERR:
            collision = self.read(COLL_REG)
            if collision & COLL_POS_NOT_VALID:
                raise CardError("bit collision beyond the 32nd bit")
            collision_at = (collision & 0x1F or 32) - 1
        if not received:
            raise CardError("an answer without data")
        return Reply(received, last_bits, collision_at)

    def crc_a(self, data: bytes) -> bytes:
        """CRC_A of ``data`` from the chip's coprocessor, low byte first, as it is sent."""
        self.write(COMMAND_REG, IDLE)
        self.write(DIV_IRQ_REG, CRC_IRQ)  # Set2 = 0: clear CRCIRq
        self.write(FIFO_LEVEL_REG, FLUSH_BUFFER)
        self._write_fifo(data)
        self.write(COMMAND_REG, CALC_CRC)
        self._wait(DIV_IRQ_REG, CRC_IRQ, "the RC522's CRC coprocessor never finished")
        self.write(COMMAND_REG, IDLE)
        return bytes([self.read(CRC_RESULT_REG_L), self.read(CRC_RESULT_REG_H)])

    def _wait(self, register: int, bits: int, what: str) -> int:
        deadline = time.monotonic() + CHIP_DEADLINE_S
        while True:
            value = self.read(register)
            if value & bits:
                return value
            if time.monotonic() > deadline:
                raise ChipError(what)

    # -- ISO/IEC 14443-3 type A ---------------------------------------------------

    def scan(self, max_cards: int = 4) -> list[bytes]:
        """Switch the field on, read the UID of every card on the antenna (up to
        ``max_cards``), switch it off. A card whose answers are garbled is left out;
        ChipError when the chip itself fails."""
        self.antenna(True)
        try:
            time.sleep(FIELD_GUARD_S)
            uids: list[bytes] = []
            for _ in range(max_cards + 2):
                if len(uids) == max_cards:
                    break
                try:
                    if self.request() is None:
                        break
                    uid = self.select()
                except CardError as error:
                    # HLTA: a card selected whose SAK came garbled is halted, so it cannot
                    # win every anticollision of this scan; the cards left in READY go back
                    # to IDLE (ISO/IEC 14443-3 6.3.3) and answer the next REQA.
                    log.debug("reader: a card could not be read: %s", error)
                    self.halt()
                    continue
                if uid not in uids:
                    uids.append(uid)
                self.halt()
            return uids
        finally:
            self.antenna(False)

    def request(self, wake: bool = False) -> bytes | None:
        """REQA (cards in IDLE) or WUPA (IDLE and HALT): the ATQA, None when no card answers.
        Several cards answer at once, so the ATQA may carry a collision: that is fine."""
        reply = self.transceive(bytes([WUPA if wake else REQA]), tx_last_bits=7)
        return None if reply is None else reply.data

    def select(self) -> bytes:
        """Anticollision and SELECT over the cascade levels: the complete UID (4, 7 or 10 bytes)
        of one card, now in ACTIVE. Raises CardError."""
        uid = bytearray()
        for sel in CASCADE_LEVELS:
            part = self._anticollision(sel)
            sak = self._select(sel, part)
            if not sak & SAK_CASCADE_BIT:
                uid += part[:4]
                return bytes(uid)
            if part[0] != CASCADE_TAG:
                raise CardError(f"SAK {sak:#04x} says the UID goes on, but level {sel:#04x} has no cascade tag")
            uid += part[1:4]
        raise CardError("the SAK of cascade level 3 still says the UID goes on")

    def halt(self) -> None:
        """HLTA: the ACTIVE card goes to HALT and answers no REQA while it stays in the field."""
        if self._hlta_frame is None:
            self._hlta_frame = HLTA + self.crc_a(HLTA)
        if self.transceive(self._hlta_frame) is not None:
            log.debug("reader: a card answered HLTA (not acknowledged)")

    def _anticollision(self, sel: int) -> bytes:
        """ANTICOLLISION at one cascade level (ISO/IEC 14443-3 6.5.3): the 4 UID bytes and BCC.

        When several cards answer, CollReg gives the first bit where they differ; the bits
        before it are kept, that bit is set to 1 and the command is sent again with one more
        known bit, until a single card answers with the rest of its UID.
        """
        known, known_bits = 0, 0  # UID bits, least significant bit first as they are sent
        for _ in range(41):
            whole, partial = divmod(known_bits, 8)
            nvb = ((2 + whole) << 4) | partial
            sent = known.to_bytes(5, "little")[: whole + (1 if partial else 0)]
            reply = self.transceive(bytes([sel, nvb]) + sent, tx_last_bits=partial, rx_align=partial)
            if reply is None:
                raise CardError(f"no answer to ANTICOLLISION {sel:#04x} (the card left?)")
            # FIFO bit j is UID bit 8 * whole + j; bits below ``partial`` are the ones sent.
            valid = reply.bit_count if reply.collision_at is None else reply.collision_at
            if valid < partial:
                raise CardError("collision inside the bits already known")
            stream = int.from_bytes(reply.data, "little")
            known |= ((stream >> partial) & ((1 << (valid - partial)) - 1)) << known_bits
            known_bits = 8 * whole + valid
            if reply.collision_at is None:
                if known_bits != 40:
                    raise CardError(f"ANTICOLLISION answer of {known_bits} bits, expected 40")
                part = known.to_bytes(5, "little")
                if part[0] ^ part[1] ^ part[2] ^ part[3] != part[4]:
                    raise CardError(f"UID part {part[:4].hex()} fails its BCC check")
                return part
            if known_bits >= 40:
                raise CardError("collision in the BCC")
            known |= 1 << known_bits
            known_bits += 1
        raise CardError("anticollision did not converge")

    def _select(self, sel: int, part: bytes) -> int:
        """SELECT a level with its 4 UID bytes and BCC: the card's SAK, its CRC_A checked."""
        frame = bytes([sel, SELECT_NVB]) + part
        reply = self.transceive(frame + self.crc_a(frame))
        if reply is None:
            raise CardError(f"no SAK to SELECT {sel:#04x} (the card left?)")
        if reply.collision_at is not None:
            raise CardError(f"two cards answered SELECT {sel:#04x} with {part[:4].hex()}")
        if len(reply.data) != 3 or reply.last_bits:
            raise CardError(f"SAK of {reply.bit_count} bits, expected 24")
        if self.crc_a(reply.data[:1]) != reply.data[1:]:
            raise CardError(f"SAK {reply.data.hex()} fails its CRC_A check")
        return reply.data[0]
