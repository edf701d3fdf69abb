"""A simulated MFRC522 at register level, with ISO/IEC 14443-3 type A cards in its field.

``SimulatedRc522`` is a fake ``spidev.SpiDev`` (``open``, ``xfer2``, ``close``,
``max_speed_hz``, ``mode``): the real ``evcp.hal.reader.Mfrc522Reader`` runs
over it unchanged. It implements what that driver uses, as the MFRC522
datasheet (Rev. 3.9) describes it:

- SPI framing (8.1.2.3): reads of several addresses in one transfer, writes of
  several bytes to one address (the FIFO);
- CommandReg Idle, CalcCRC (the CRC coprocessor, with ModeReg's CRCPreset),
  Transceive (started by BitFramingReg StartSend, with TxLastBits and
  RxAlign), SoftReset; ComIrqReg/DivIrqReg with their Set1/Set2 writes;
  ErrorReg (CollErr, BufferOvfl), FIFODataReg/FIFOLevelReg (64 bytes,
  FlushBuffer), ControlReg RxLastBits, CollReg (CollPos, CollPosNotValid,
  ValuesAfterColl); TxControlReg (the RF field), TxASKReg (100 % ASK);
- the timer: TModeReg TAuto, TPrescaler, TReload; TimerIRq when nothing
  answered in time. The chip's time is virtual: each SPI transfer advances it
  by the time it takes (``transfer_overhead_s`` plus 8 bits per byte at
  ``max_speed_hz``), so a driver busy-waiting on ComIrqReg sees the timer
  expire after a realistic number of reads, and counts are repeatable;
- VersionReg; an absent chip (every read gives 0x00 or 0xFF).

Each ``SimulatedCard`` follows the PICC state machine of ISO/IEC 14443-3 6.3
(POWER-OFF, IDLE, READY, ACTIVE, HALT and the READY*/ACTIVE* variants):
REQA/WUPA answered with ATQA, ANTICOLLISION/SELECT at cascade levels 1-3 with
its 4-, 7- or 10-byte UID split by cascade tags, SAK with CRC_A, HLTA. When
several cards answer at once their bits combine as on the air: where they
differ, the chip sees a collision.

Register addresses and the CRC_A here are written from the datasheet and the
standard, not imported from the driver, so a mistake in one is not mirrored
in the other.

Verbs for tests and the bench: ``present(uid)``, ``remove(uid)``,
``remove_all()``, ``disconnect(reads=0x00)`` / ``reconnect()``,
``inject_crc_error()``, ``inject_bit_error()``. ``transfers`` counts SPI
transfers; ``rf_log`` lists the last PICC commands sent on the air;
``history`` records the verbs with their monotonic time.
"""

from __future__ import annotations

import threading
import time
from collections import deque

FC_HZ = 13.56e6
ETU_S = 128 / FC_HZ  # one bit at 106 kbit/s (ISO/IEC 14443-2)
FRAME_DELAY_S = 1236 / FC_HZ  # PCD frame end to PICC answer (ISO/IEC 14443-3 6.2.1)
FIFO_SIZE = 64

# Registers (datasheet 9.2).
COMMAND, COM_IRQ, DIV_IRQ, ERROR, FIFO_DATA, FIFO_LEVEL = 0x01, 0x04, 0x05, 0x06, 0x09, 0x0A
CONTROL, BIT_FRAMING, COLL = 0x0C, 0x0D, 0x0E
MODE, TX_MODE, RX_MODE, TX_CONTROL, TX_ASK = 0x11, 0x12, 0x13, 0x14, 0x15
CRC_RESULT_H, CRC_RESULT_L = 0x21, 0x22
T_MODE, T_PRESCALER, T_RELOAD_H, T_RELOAD_L = 0x2A, 0x2B, 0x2C, 0x2D
VERSION = 0x37

#: Reset values that differ from 0x00 (datasheet 9.3, register tables).
RESET_VALUES = {
    0x01: 0x20, 0x02: 0x80, 0x04: 0x14, 0x07: 0x21, 0x0B: 0x08, 0x0C: 0x10, 0x0E: 0xA0, 0x11: 0x3F,
    0x14: 0x80, 0x16: 0x10, 0x17: 0x84, 0x18: 0x84, 0x19: 0x4D, 0x1C: 0x62, 0x1F: 0xEB, 0x21: 0xFF,
    0x22: 0xFF, 0x24: 0x26, 0x26: 0x48, 0x27: 0x88, 0x28: 0x20, 0x29: 0x20,
}
CMD_IDLE, CMD_CALC_CRC, CMD_NO_CHANGE, CMD_TRANSCEIVE, CMD_SOFT_RESET = 0x0, 0x3, 0x7, 0xC, 0xF
TX_IRQ, RX_IRQ, ERR_IRQ, TIMER_IRQ = 0x40, 0x20, 0x02, 0x01
CRC_IRQ = 0x04
COLL_ERR, BUFFER_OVFL = 0x08, 0x10
CRC_PRESETS = {0: 0x0000, 1: 0x6363, 2: 0xA671, 3: 0xFFFF}

# ISO/IEC 14443-3 type A.
REQA, WUPA = 0x26, 0x52
SEL_CODES = (0x93, 0x95, 0x97)
CASCADE_TAG = 0x88
HLTA = bytes([0x50, 0x00])


class NotSimulated(Exception):
    """The driver used a feature of the chip this simulation does not have."""


def crc_a(data: bytes, preset: int = 0x6363) -> bytes:
    """CRC_A of ISO/IEC 14443-3 (6.2.4, Annex B), low byte first."""
    crc = preset
    for byte in data:
        byte ^= crc & 0xFF
        byte = (byte ^ (byte << 4)) & 0xFF
        crc = ((crc >> 8) ^ (byte << 8) ^ (byte << 3) ^ (byte >> 4)) & 0xFFFF
    return bytes([crc & 0xFF, crc >> 8])


def _uid_bytes(uid: str | bytes) -> bytes:
    data = bytes.fromhex(uid) if isinstance(uid, str) else bytes(uid)
    if len(data) not in (4, 7, 10):
        raise ValueError(f"a UID has 4, 7 or 10 bytes (got {uid!r})")
    return data


class SimulatedCard:
    """One type A card (PICC): its UID, SAK and ISO/IEC 14443-3 state.

    ``sak`` is the SAK of the last cascade level (default 0x08, a MIFARE
    Classic, for 4 bytes; 0x00, an Ultralight/NTAG, for 7; 0x20, ISO/IEC
    14443-4, for 10); earlier levels answer 0x04, the cascade bit.
    """

    def __init__(self, uid: str | bytes, sak: int | None = None):
        self.uid = _uid_bytes(uid)
        size = {4: 0, 7: 1, 10: 2}[len(self.uid)]
        self.sak = sak if sak is not None else (0x08, 0x00, 0x20)[size]
        if self.sak & 0x04:
            raise ValueError("the last SAK must not have the cascade bit 0x04")
        self.atqa = bytes([0x04 | (size << 6), 0x00])  # ATQA b8b7: UID size (6.5.2.1)
        rest, self.levels = self.uid, []
        while len(rest) > 4:  # 6.5.4: cascade tag + 3 UID bytes, then the next level
            self.levels.append(bytes([CASCADE_TAG]) + rest[:3])
            rest = rest[3:]
        self.levels.append(rest)
        self.levels = [part + bytes([part[0] ^ part[1] ^ part[2] ^ part[3]]) for part in self.levels]
        self.state = "POWER-OFF"
        self.level = 0
        self.from_halt = False  # READY* / ACTIVE*: back to HALT, not IDLE, on a wrong command
        self.crc_errors = 0
        self.bit_errors = 0

    @property
    def id_tag(self) -> str:
        return self.uid.hex().upper()

    def power(self, on: bool) -> None:
        self.state = "IDLE" if on else "POWER-OFF"

    def hear(self, frame: bytes, bits: int) -> tuple[int, int] | None:
        """A frame of ``bits`` bits from the reader: the answer as (bits LSB first, count), or None."""
        state = self.state
        if state == "POWER-OFF":
            return None
        if bits == 7:
            command = frame[0]
            if (command == REQA and state == "IDLE") or (command == WUPA and state in ("IDLE", "HALT")):
                self.from_halt = state == "HALT"
                self.state, self.level = "READY", 0
                return int.from_bytes(self.atqa, "little"), 16
            self._unexpected()
            return None
        if state == "READY":
            return self._hear_when_ready(frame, bits)
        if state == "ACTIVE":
            if bits == 32 and frame[:2] == HLTA:
                if crc_a(frame[:2]) == frame[2:4]:
                    self.state = "HALT"
                return None  # a frame with a transmission error is ignored
            self._unexpected()
        return None

    def _hear_when_ready(self, frame: bytes, bits: int):
        if len(frame) < 2 or frame[0] != SEL_CODES[self.level]:
            self._unexpected()
            return None
        part, nvb = self.levels[self.level], frame[1]
        if nvb == 0x70:  # SELECT
            if bits != 72 or crc_a(frame[:7]) != frame[7:9] or frame[2:7] != part:
                return None  # garbled, or another card's UID: stay READY, silent
            if self.level + 1 < len(self.levels):
                sak, self.level = 0x04, self.level + 1
            else:
                sak, self.state = self.sak, "ACTIVE"
            answer = bytes([sak]) + crc_a(bytes([sak]))
            if self.crc_errors:
                self.crc_errors -= 1
                answer = answer[:1] + bytes([answer[1] ^ 0x5A]) + answer[2:]
            return int.from_bytes(answer, "little"), 24
        whole, partial = nvb >> 4, nvb & 0x0F
        known = (whole - 2) * 8 + partial
        if not (2 <= whole <= 6 and partial <= 7 and 0 <= known < 40 and bits == 16 + known):
            self._unexpected()
            return None
        mine = int.from_bytes(part, "little")
        mask = (1 << known) - 1
        if int.from_bytes(frame[2:], "little") & mask != mine & mask:
            return None  # the known bits are not this card's: stay READY, silent (6.5.3.1)
        answer = mine >> known
        if self.bit_errors:
            self.bit_errors -= 1
            answer ^= 1 << ((40 - known) // 2)
        return answer, 40 - known

    def _unexpected(self) -> None:
        # 6.3.3-6.3.7: any other command from READY or ACTIVE sends the card back.
        if self.state in ("READY", "ACTIVE"):
            self.state = "HALT" if self.from_halt else "IDLE"


class SimulatedRc522:
    """A fake ``spidev.SpiDev`` with an MFRC522 behind it; see the module docstring.

    Opens only as ``open(bus, device)``; other numbers raise FileNotFoundError
    as a missing ``/dev/spidevB.D`` does.
    """

    def __init__(self, bus: int = 0, device: int = 1, version: int = 0x92, transfer_overhead_s: float = 30e-6):
        self.bus, self.device, self.version = bus, device, version
        self.transfer_overhead_s = transfer_overhead_s
        self.max_speed_hz = 500_000
        self.mode = 0
        self.transfers = 0
        self.now = 0.0
        """Virtual seconds, advanced by SPI traffic."""
        self.history: deque[tuple[float, str]] = deque(maxlen=1000)
        self.rf_log: deque[str] = deque(maxlen=1000)
        self.is_open = False
        self._cards: dict[str, SimulatedCard] = {}
        self._absent_reads: int | None = None
        self._lock = threading.RLock()
        self._power_on_reset()

    # -- verbs -----------------------------------------------------------------------

    def present(self, uid: str | bytes, sak: int | None = None) -> SimulatedCard:
        """Put a card on the antenna (a no-op if it lies there already)."""
        card = SimulatedCard(uid, sak)
        with self._lock:
            if card.id_tag in self._cards:
                return self._cards[card.id_tag]
            self._cards[card.id_tag] = card
            card.power(self._field_on)
            self._record(f"present {card.id_tag}")
        return card

    def remove(self, uid: str | bytes) -> None:
        """Take a card away. KeyError if it is not on the antenna."""
        tag = _uid_bytes(uid).hex().upper()
        with self._lock:
            del self._cards[tag]
            self._record(f"remove {tag}")

    def remove_all(self) -> None:
        with self._lock:
            self._cards.clear()
            self._record("remove all")

    @property
    def cards(self) -> list[str]:
        """The idTags of the cards on the antenna."""
        with self._lock:
            return list(self._cards)

    def card(self, uid: str | bytes) -> SimulatedCard:
        with self._lock:
            return self._cards[_uid_bytes(uid).hex().upper()]

    def disconnect(self, reads: int = 0x00) -> None:
        """The chip is gone (unplugged, dead): every SPI read gives ``reads`` (0x00 or 0xFF)."""
        with self._lock:
            self._absent_reads = reads
            for card in self._cards.values():
                card.power(False)
            self._record(f"disconnect, reads {reads:#04x}")

    def reconnect(self) -> None:
        """The chip is back, as after a power cycle: every register at its reset value."""
        with self._lock:
            self._absent_reads = None
            self._power_on_reset()
            self._record("reconnect")

    @property
    def connected(self) -> bool:
        return self._absent_reads is None

    def inject_crc_error(self, uid: str | bytes | None = None, count: int = 1) -> None:
        """The next ``count`` SAKs of the card (of every card on the antenna) arrive with a wrong CRC_A."""
        with self._lock:
            for card in self._targets(uid):
                card.crc_errors += count
            self._record(f"crc error x{count}")

    def inject_bit_error(self, uid: str | bytes | None = None, count: int = 1) -> None:
        """The next ``count`` ANTICOLLISION answers arrive with one UID bit flipped (the BCC shows it)."""
        with self._lock:
            for card in self._targets(uid):
                card.bit_errors += count
            self._record(f"bit error x{count}")

    @property
    def field_on(self) -> bool:
        return self._field_on

    # -- spidev ----------------------------------------------------------------------

    def open(self, bus: int, device: int) -> None:
        if (bus, device) != (self.bus, self.device):
            raise FileNotFoundError(2, "No such file or directory", f"/dev/spidev{bus}.{device}")
        self.is_open = True

    def close(self) -> None:
        self.is_open = False

    def xfer2(self, data: list[int]) -> list[int]:
        with self._lock:
            if not self.is_open:
                raise OSError(9, "Bad file descriptor")
            self.transfers += 1
            self._advance(self.transfer_overhead_s + len(data) * 8 / self.max_speed_hz)
            if self._absent_reads is not None:
                return [self._absent_reads] * len(data)
            first = data[0]
            if first & 0x01:
                raise NotSimulated(f"SPI address byte {first:#04x}: bit 0 must be 0 (datasheet 8.1.2.3)")
            if first & 0x80:
                out = [0]
                for address in data[:-1]:
                    if not address & 0x80:
                        raise NotSimulated("a read transfer must give a read address in every byte but the last")
                    out.append(self._read((address >> 1) & 0x3F))
                return out
            register = (first >> 1) & 0x3F
            for value in data[1:]:
                self._write(register, value)
            return [0] * len(data)

    # -- the chip ----------------------------------------------------------------------

    def _power_on_reset(self) -> None:
        self._registers = dict(RESET_VALUES)
        self._fifo = bytearray()
        self._command = CMD_IDLE
        self._crc = 0xFFFF
        self._pending_rx: tuple[float, int, int, int | None] | None = None
        self._timer_at: float | None = None
        self._set_field(False)

    def _targets(self, uid):
        return list(self._cards.values()) if uid is None else [self._cards[_uid_bytes(uid).hex().upper()]]

    def _record(self, event: str) -> None:
        self.history.append((time.monotonic(), event))

    @property
    def _field_on(self) -> bool:
        return bool(self._registers.get(TX_CONTROL, 0) & 0x03) and self._absent_reads is None

    def _set_field(self, on: bool) -> None:
        for card in self._cards.values():
            if on and card.state == "POWER-OFF":
                card.power(True)
            elif not on:
                card.power(False)

    def _reg(self, register: int) -> int:
        return self._registers.get(register, 0)

    def _read(self, register: int) -> int:
        if register == FIFO_DATA:
            return self._fifo.pop(0) if self._fifo else 0
        if register == FIFO_LEVEL:
            return len(self._fifo)
        if register == COMMAND:
            return (self._reg(COMMAND) & 0x30) | self._command
        if register == COM_IRQ:
            return self._reg(COM_IRQ) & 0x7F
        if register == DIV_IRQ:
            return self._reg(DIV_IRQ) & 0x7F
        if register == CRC_RESULT_H:
            return self._crc >> 8
        if register == CRC_RESULT_L:
            return self._crc & 0xFF
        if register == VERSION:
            return self.version
        return self._reg(register)

    def _write(self, register: int, value: int) -> None:
        if register == COMMAND:
            self._run_command(value)
        elif register in (COM_IRQ, DIV_IRQ):
            bits = value & 0x7F
            current = self._reg(register)
            self._registers[register] = current | bits if value & 0x80 else current & ~bits
        elif register == FIFO_LEVEL:
            if value & 0x80:
                self._fifo.clear()
                self._registers[ERROR] = self._reg(ERROR) & ~BUFFER_OVFL
        elif register == FIFO_DATA:
            if self._command == CMD_CALC_CRC:
                self._crc_feed(bytes([value]))
            elif len(self._fifo) >= FIFO_SIZE:
                self._registers[ERROR] = self._reg(ERROR) | BUFFER_OVFL
                self._registers[COM_IRQ] = self._reg(COM_IRQ) | ERR_IRQ
            else:
                self._fifo.append(value)
        elif register == COLL:
            self._registers[COLL] = (self._reg(COLL) & 0x7F) | (value & 0x80)
        elif register == CONTROL:
            if value & 0xC0:
                raise NotSimulated("ControlReg TStopNow/TStartNow are not simulated")
        elif register in (ERROR, VERSION):
            pass  # read-only
        elif register == TX_CONTROL:
            self._registers[TX_CONTROL] = value
            self._set_field(self._field_on)
        elif register == BIT_FRAMING:
            self._registers[BIT_FRAMING] = value
            if value & 0x80 and self._command == CMD_TRANSCEIVE:
                self._transceive()
        else:
            self._registers[register] = value

    def _run_command(self, value: int) -> None:
        command = value & 0x0F
        self._registers[COMMAND] = value & 0x30  # RcvOff, PowerDown
        if command == CMD_NO_CHANGE:
            pass
        elif command == CMD_IDLE:
            self._command = CMD_IDLE
            self._pending_rx = None
            self._timer_at = None
        elif command == CMD_CALC_CRC:
            self._command = CMD_CALC_CRC
            self._crc = CRC_PRESETS[self._reg(MODE) & 0x03]
            data, self._fifo = bytes(self._fifo), bytearray()
            self._crc_feed(data)
        elif command == CMD_TRANSCEIVE:
            self._command = CMD_TRANSCEIVE
        elif command == CMD_SOFT_RESET:
            self._power_on_reset()
        else:
            raise NotSimulated(f"MFRC522 command {command:#x} is not simulated")

    def _crc_feed(self, data: bytes) -> None:
        if data:
            value = crc_a(data, self._crc)
            self._crc = value[0] | (value[1] << 8)
        self._registers[DIV_IRQ] = self._reg(DIV_IRQ) | CRC_IRQ

    def _transceive(self) -> None:
        """StartSend: send the FIFO to the cards, schedule their combined answer and the timer."""
        if self._reg(TX_MODE) & 0xF0 or self._reg(RX_MODE) & 0xF0:
            raise NotSimulated("only 106 kbit/s without hardware CRC (TxModeReg/RxModeReg 0x00) is simulated")
        framing = self._reg(BIT_FRAMING)
        tx_last_bits, rx_align = framing & 0x07, (framing >> 4) & 0x07
        data, self._fifo = bytearray(self._fifo), bytearray()
        if not data:
            raise NotSimulated("Transceive with an empty FIFO")
        bits = len(data) * 8 if tx_last_bits == 0 else (len(data) - 1) * 8 + tx_last_bits
        if tx_last_bits:
            data[-1] &= (1 << tx_last_bits) - 1
        self._registers[ERROR] = 0
        self._registers[COM_IRQ] = self._reg(COM_IRQ) | TX_IRQ
        tx_end = self.now + (bits + bits // 8 + 2) * ETU_S
        answers = []
        heard = self._field_on and self._reg(TX_ASK) & 0x40  # type A cards need 100 % ASK
        if heard:
            self.rf_log.append(_describe(bytes(data), bits))
            answers = [a for card in list(self._cards.values()) if (a := card.hear(bytes(data), bits))]
        self._pending_rx = None
        self._timer_at = None
        t_mode = self._reg(T_MODE)
        if t_mode & 0x80:  # TAuto: the timer starts at the end of the transmission
            prescaler = ((t_mode & 0x0F) << 8) | self._reg(T_PRESCALER)
            reload = (self._reg(T_RELOAD_H) << 8) | self._reg(T_RELOAD_L)
            self._timer_at = tx_end + (2 * prescaler + 1) * (reload + 1) / FC_HZ
        if answers and not self._reg(COMMAND) & 0x20:  # RcvOff: the receiver is off
            value, count, collision = _on_the_air(answers)
            rx_start = tx_end + FRAME_DELAY_S
            if self._timer_at is not None and rx_start < self._timer_at:
                self._timer_at = None  # the timer stops when an answer starts
            self._pending_rx = (rx_start + (count + count // 8 + 2) * ETU_S, value, count, collision)

    def _advance(self, seconds: float) -> None:
        self.now += seconds
        events = []
        if self._timer_at is not None and self._timer_at <= self.now:
            events.append((self._timer_at, "timer"))
        if self._pending_rx is not None and self._pending_rx[0] <= self.now:
            events.append((self._pending_rx[0], "rx"))
        for _, event in sorted(events):
            if event == "timer":
                self._timer_at = None
                self._registers[COM_IRQ] = self._reg(COM_IRQ) | TIMER_IRQ
            else:
                self._receive(*self._pending_rx[1:])
                self._pending_rx = None

    def _receive(self, value: int, count: int, collision: int | None) -> None:
        """An answer arrives: into the FIFO from bit RxAlign of its first byte."""
        rx_align = (self._reg(BIT_FRAMING) >> 4) & 0x07
        stream, stream_bits = value << rx_align, rx_align + count
        coll = self._reg(COLL) & 0x80
        error = 0
        if collision is None:
            coll |= 0x20  # CollPosNotValid: no collision
        else:
            position = rx_align + collision  # from bit 0 of the first FIFO byte
            error |= COLL_ERR
            if not coll & 0x80:  # ValuesAfterColl = 0: the bits from the collision on read 0
                stream &= (1 << position) - 1
            coll |= (position + 1) & 0x1F if position < 32 else 0x20
        self._registers[COLL] = coll
        for byte in stream.to_bytes((stream_bits + 7) // 8, "little"):
            if len(self._fifo) >= FIFO_SIZE:
                error |= BUFFER_OVFL
                break
            self._fifo.append(byte)
        self._registers[CONTROL] = (self._reg(CONTROL) & 0xF8) | (stream_bits % 8)
        self._registers[ERROR] = self._reg(ERROR) | error
        self._registers[COM_IRQ] = self._reg(COM_IRQ) | RX_IRQ | (ERR_IRQ if error else 0)


def _on_the_air(answers: list[tuple[int, int]]) -> tuple[int, int, int | None]:
    """Several cards answering at once: the bits they agree on, and the first bit where they differ."""
    count = max(bits for _, bits in answers)
    ones, zeros = 0, 0
    for value, bits in answers:
        mask = (1 << bits) - 1
        ones |= value & mask
        zeros |= ~value & mask
    differ = ones & zeros
    collision = (differ & -differ).bit_length() - 1 if differ else None
    return ones, count, collision


def _describe(frame: bytes, bits: int) -> str:
    if bits == 7:
        return {REQA: "REQA", WUPA: "WUPA"}.get(frame[0], f"short frame {frame[0]:#04x}")
    if frame[:1] in (bytes([s]) for s in SEL_CODES) and len(frame) > 1:
        if frame[1] == 0x70:
            return f"SELECT {frame[0]:#04x}"
        return f"ANTICOLLISION {frame[0]:#04x} {(frame[1] >> 4) * 8 + (frame[1] & 0x0F) - 16} bits"
    if frame[:2] == HLTA:
        return "HLTA"
    return f"frame {frame.hex()}"


__all__ = ["NotSimulated", "SimulatedCard", "SimulatedRc522", "crc_a"]
