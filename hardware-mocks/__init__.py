"""Simulated hardware: what the bench and the tests run the real drivers against.

- ``pins``: gpiozero's MockFactory set up for the charger (``use_mock_pins``,
  ``mock_pins``), plus mock lines driven by outside circuits.
- ``ev``: ``SimulatedEv`` (the EV behind a pilot interface board) and
  ``ContactorModel`` (the contactor's mirror contact, weldable).
- ``sysfs_pwm``: ``FakeSysfsPwm``, a ``/sys/class/pwm``-like tree for ``SysfsPwm``.
- ``reader``: ``SimulatedReader``, a ``TagReader`` with test verbs.
- ``meter_server`` and ``station``: the simulated meter and the whole
  simulated charge point the bench runs.

Never chosen by default: ``hardware.backend = "mock"`` selects these.
"""
