"""The OCPP frames as the installer and the status page see them, the same for 1.6J and 2.0.1:
every frame in the trace log and the last ones in memory (``FrameTrace``), secrets masked
(``redact``), and the ``ocpp`` library's own log lines masked and bounded (``RedactingLogger``).
Frames never go to the main log."""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from collections import deque
from typing import Any

from ocpp.exceptions import OCPPError

trace_log = logging.getLogger("evcp.ocpp.trace")

TRACE_FRAME_MAX_CHARS = 16_384
"""Frames kept in memory for /api/trace are cut to this length (the trace file has them whole)."""
LOGGED_TEXT_MAX_CHARS = 2_000
"""A library log line quoting a message is cut to this length."""

#: Configuration keys whose values are secrets (matched in any letter case: key names are CiString).
SECRET_KEYS = frozenset({"authorizationkey"})
MASK = "********"

_NAMES_A_SECRET_KEY = re.compile("|".join(re.escape(key) for key in SECRET_KEYS), re.IGNORECASE)
#: A ``value`` field in JSON or in a Python repr: "value": "...", 'value': '...'. The two
#: alternatives inside the string never match the same character, so an unterminated string
#: costs one linear scan, not an exponential search.
_VALUE_FIELD = re.compile(r"""(["']value["']\s*:\s*)(["'])(?:\\.|(?!\2)[^\\])*\2""")
#: A password in a URL. The scheme may only start where no scheme character precedes it, so a long
#: run of letters is scanned once, not once per letter.
_URL_PASSWORD = re.compile(r"(?<![a-zA-Z0-9+.-])([a-zA-Z][a-zA-Z0-9+.-]*://[^/\s:@\"']*:)[^/\s@\"']+@")


def redact(frame: str) -> str:
    """The frame (or log text) with the values of secret configuration keys replaced by ********.

    A ``{"key": "AuthorizationKey", "value": ...}`` object has its value masked wherever it is
    in the message (ChangeConfiguration.req, GetConfiguration.conf), in any letter case and
    field order. Text that is not JSON but names a secret key (a library log line with a
    Python repr) has every value field masked. A password in a URL (the FTP location of
    UpdateFirmware, GetDiagnostics, GetLog) is masked too. Linear in the length of the text,
    whatever it holds.
    """
    if "://" in frame:
        frame = _URL_PASSWORD.sub(lambda m: m.group(1) + MASK + "@", frame)
    if not _NAMES_A_SECRET_KEY.search(frame) and "\\u" not in frame:
        return frame
    try:
        message = json.loads(frame)
        masked = _masked(message)
    except (ValueError, RecursionError):
        return _VALUE_FIELD.sub(lambda m: m.group(1) + m.group(2) + MASK + m.group(2), frame)
    if masked == message:
        return frame
    return json.dumps(masked, separators=(",", ":"))


def _masked(item: Any) -> Any:
    if isinstance(item, list):
        return [_masked(element) for element in item]
    if not isinstance(item, dict):
        if isinstance(item, str) and _NAMES_A_SECRET_KEY.search(item):
            return _VALUE_FIELD.sub(lambda m: m.group(1) + m.group(2) + MASK + m.group(2), item)
        return item
    key = item.get("key")
    secret = isinstance(key, str) and key.lower() in SECRET_KEYS
    return {name: (MASK if secret and name == "value" and value else _masked(value))
            for name, value in item.items()}


def shorten(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, saying how much was left out."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text) - limit} more characters)"


class RedactingLogger(logging.LoggerAdapter):
    """A logger for the ``ocpp`` library, which logs whole messages (and, on an error, the
    request with its payload): secrets are masked, the line is cut to LOGGED_TEXT_MAX_CHARS,
    and a traceback that could quote a secret is left out, as is the traceback of a protocol
    error (a request the central system got wrong, answered with a CALLERROR: not a bug)."""

    def log(self, level, msg, *args, exc_info=None, **kwargs):
        if not self.isEnabledFor(level):
            return
        text = str(msg) % args if args else str(msg)
        shown = redact(text)
        if shown != text:
            exc_info = None
        if exc_info is True:
            exc_info = sys.exc_info()
        if isinstance(exc_info, tuple) and isinstance(exc_info[1], OCPPError):
            exc_info = None
        self.logger.log(level, "%s", shorten(shown, LOGGED_TEXT_MAX_CHARS), exc_info=exc_info, **kwargs)


class FrameTrace:
    """The last frames in memory (for the status page) and every frame in the trace log."""

    def __init__(self, size: int = 500):
        self._frames: deque[dict[str, Any]] = deque(maxlen=size)
        self._seq = 0

    def record(self, direction: str, frame: str | bytes) -> None:
        self._seq += 1
        if isinstance(frame, bytes):
            frame = frame.decode("utf-8", errors="replace")
        elif not frame.isascii():
            # A lone surrogate (text that was never UTF-8) cannot be written to the trace file.
            frame = frame.encode("utf-8", errors="replace").decode("utf-8")
        shown = redact(frame)
        self._frames.append({"seq": self._seq, "time": time.time(), "direction": direction,
                             "frame": shorten(shown, TRACE_FRAME_MAX_CHARS)})
        trace_log.debug("%s %s", ">>" if direction == "out" else "<<", shown)

    def since(self, seq: int) -> tuple[int, list[dict[str, Any]]]:
        return self._seq, [f for f in self._frames if f["seq"] > seq]
