"""The OCPP-J 1.6 link: ``ocpp.v16.ChargePoint`` with the framing both versions share
(``evcp.ocpp.framing``) in the 1.6 vocabulary (OCPP-J 1.6 §4.2.3: FormationViolation,
OccurenceConstraintViolation; an unreadable or unknown frame is FormationViolation, ProtocolError
or PropertyConstraintViolation) and a frame trace."""

from __future__ import annotations

from ocpp.v16 import ChargePoint

from evcp.ocpp.framing import OCPP_J_1_6, OcppJLink

class ChargePointLink(OcppJLink, ChargePoint):
    """``ocpp.v16.ChargePoint`` with the 1.6 framing and a frame trace."""

    ocpp_j = OCPP_J_1_6
    station = "charge point"
