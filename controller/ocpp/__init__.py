"""What OCPP 1.6J and OCPP 2.0.1 share, used by both protocol adapters (``evcp.ocpp16``,
``evcp.ocpp201``) and by neither protocol's vocabulary alone: the frame trace, the durable
outbox and security-event queue, the security profiles of the connection, certificates, file
transfers, firmware updates and log uploads."""
