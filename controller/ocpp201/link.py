"""The OCPP-J 2.0.1 link: ``ocpp.v201.ChargePoint`` with the framing both versions share
(``evcp.ocpp.framing``) in the 2.0.1 vocabulary (OCPP-J 2.0.1 §4.3: an unreadable frame is
RpcFrameworkError, an unknown MessageTypeId MessageTypeNotSupported, a payload that is not an
object FormatViolation; the id of a CALLERROR is a string, "-1" when the CALL's cannot be read)
and a frame trace."""

from __future__ import annotations

from ocpp.v201 import ChargePoint

from evcp.ocpp.framing import OCPP_J_2_0_1, OcppJLink

SUBPROTOCOL = "ocpp2.0.1"


class StationLink(OcppJLink, ChargePoint):
    """``ocpp.v201.ChargePoint`` with the 2.0.1 framing and a frame trace."""

    ocpp_j = OCPP_J_2_0_1
    station = "charging station"
