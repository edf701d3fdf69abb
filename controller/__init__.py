"""evcp: the software inside a Raspberry Pi EV charger."""

__version__ = "0.1.0"
