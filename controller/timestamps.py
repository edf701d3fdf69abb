"""OCPP dateTime values (OCPP-J 1.6 §3.1.3: ISO 8601 in UTC) to and from POSIX seconds."""

from __future__ import annotations

from datetime import datetime, timezone


def timestamp(at: float) -> str:
    """OCPP dateTime: UTC, ISO 8601, millisecond precision, 'Z' suffix."""
    return datetime.fromtimestamp(at, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_timestamp(text: str) -> float:
    """POSIX seconds of an OCPP dateTime; a time without an offset is taken as UTC.
    Raises ValueError naming the text when it is not an ISO 8601 date and time."""
    try:
        moment = datetime.fromisoformat(text.strip().replace("z", "Z").replace("Z", "+00:00"))
    except (ValueError, AttributeError):
        raise ValueError(f"not an ISO 8601 date and time: {text!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()
