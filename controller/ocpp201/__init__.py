"""OCPP 2.0.1 charging-station adapter over the same pure core as ``evcp.ocpp16``."""
