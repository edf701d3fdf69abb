"""How the charger proves who it is to the central system, and checks who the central system is.

OCPP 1.6 security whitepaper (edition 2), "Secure connection setup":

- profile 0: no security (not part of the whitepaper; a plain connection as in OCPP-J 1.6);
- profile 1: HTTP Basic authentication, ``Authorization: Basic base64(<chargeBoxId>:<password>)``
  on the websocket upgrade request;
- profile 2: TLS (1.2 or later, the central system's certificate verified, hostname checked)
  and HTTP Basic authentication;
- profile 3: TLS with a client certificate, no HTTP Basic authentication.

The profile in force is the OCPP key ``SecurityProfile``; the password is the key
``AuthorizationKey``. The central system may raise the profile, never lower it, and may change
the password (whitepaper "Migrating to a higher security profile" and "Updating the
Charge Point password"; OCTT TC_083, TC_084, TC_073).

The AuthorizationKey, as it travels in ChangeConfiguration and as it is stored (in the state
database, with the Central System's other changes), is one of:

- 32 to 40 hexadecimal digits: the hexadecimal form of a password of 16 to 20 bytes, which may
  be random binary (the whitepaper's recommendation; OCTT TC_073 sends
  ``4F43415F4F4354545F61646D696E5F74657374``, the hex of "OCA_OCTT_admin_test"). The Basic
  password is the decoded bytes.
- 16 to 20 printable characters: the password itself (the form OCTT also accepts, TC_085).

The lengths do not overlap, so the form is never ambiguous. The same rule applies to the
installer's ``ocpp.authorization_key`` under OCPP 1.6 (``installer_password_problem``).

OCPP 2.0.1 (Part 2 A00 "Security profiles", A01 "Update Charging Station Password") uses the
same three profiles and the same connection code; its password, SecurityCtrlr.BasicAuthPassword,
is the text itself, 16 to 40 characters, never a hexadecimal form (``plain_password``).

A wss:// URL always means TLS with the central system's certificate verified against
``ocpp.ca_file`` (or the system's CA store), whatever the profile: there is no way to turn
verification off. Profiles 2 and 3 require a wss:// URL.

Everything here is pure but reading certificate files into an ``ssl.SSLContext`` and the
file permission helpers.
"""

from __future__ import annotations

import base64
import os
import re
import ssl
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable
from urllib.parse import urlsplit

import websockets

from evcp.timestamps import timestamp

PROFILES = {
    0: "no security",
    1: "HTTP Basic authentication",
    2: "TLS with HTTP Basic authentication",
    3: "TLS with a client certificate",
}

PROFILES_WITH_PASSWORD = (1, 2)
PROFILES_WITH_TLS = (2, 3)

#: TLS 1.2 cipher suites the charger offers: the whitepaper's four (ECDHE-ECDSA and RSA key
#: exchange, AES-GCM; OCTT TC_086 checks one pair or the other) and, for central systems with
#: an RSA certificate, the ECDHE-RSA AES-GCM pair. TLS 1.3 keeps OpenSSL's suites, all AEAD.
TLS12_CIPHERS = ":".join((
    "ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-ECDSA-AES256-GCM-SHA384",
    "ECDHE-RSA-AES128-GCM-SHA256", "ECDHE-RSA-AES256-GCM-SHA384",
    "AES128-GCM-SHA256", "AES256-GCM-SHA384",
))

_HEX_PASSWORD = re.compile(r"(?:[0-9A-Fa-f]{2}){16,20}")
PLAIN_PASSWORD_LENGTHS = range(16, 21)
BASIC_AUTH_PASSWORD_LENGTHS = range(16, 41)
"""OCPP 2.0.1 BasicAuthPassword: 16 to 40 characters (Part 2 A00, passwordString)."""

#: OpenSSL's X509_V_ERR_HOSTNAME_MISMATCH.
_HOSTNAME_MISMATCH = 62
#: OpenSSL reasons that mean the central system offered no TLS version or cipher suite the
#: charger accepts (whitepaper security events InvalidTLSVersion, InvalidTLSCipherSuite).
_TLS_VERSION_REASONS = {"UNSUPPORTED_PROTOCOL", "TLSV1_ALERT_PROTOCOL_VERSION", "NO_PROTOCOLS_AVAILABLE"}
_TLS_CIPHER_REASONS = {"NO_SHARED_CIPHER", "NO_CIPHERS_AVAILABLE"}


class SecuritySettingsError(ValueError):
    """The security settings cannot work: the message names the setting to fix."""


# ---------------------------------------------------------------------------
# The AuthorizationKey


def authorization_key_problem(text: str) -> str | None:
    """Why ``text`` cannot be an AuthorizationKey (see the module docstring), or None."""
    if _HEX_PASSWORD.fullmatch(text) or len(text) in PLAIN_PASSWORD_LENGTHS:
        return None
    return "expected 16 to 20 characters, or 32 to 40 hexadecimal digits (a password of 16 to 20 bytes)"


def basic_auth_password_problem(text: str) -> str | None:
    """Why ``text`` cannot be an OCPP 2.0.1 BasicAuthPassword, or None."""
    if len(text) in BASIC_AUTH_PASSWORD_LENGTHS and text.isprintable():
        return None
    return f"expected 16 to 40 printable characters (got {len(text)})"


def installer_password_problem(text: str, version: str) -> str | None:
    """Why ``ocpp.authorization_key`` cannot be the password under ocpp.version ``version``, or
    None: 1.6 reads it as an AuthorizationKey, 2.0.1 as a BasicAuthPassword; "auto" sends it in
    whichever protocol the central system picks, so it must be the same password in both: 16 to
    20 printable characters (32 to 40 hex digits would be decoded by 1.6, sent as text by 2.0.1).
    The problem never shows the text, only its length."""
    if version == "1.6":
        return authorization_key_problem(text)
    if version == "2.0.1":
        return basic_auth_password_problem(text)
    if len(text) in PLAIN_PASSWORD_LENGTHS and text.isprintable():
        return None
    return (f'with ocpp.version "auto" it is the password of OCPP 1.6 and 2.0.1 alike: expected 16 to 20 '
            f"printable characters (got {len(text)}); 2.0.1 alone takes up to 40, and 1.6 would hex-decode 32 to 40 "
            "hex digits that 2.0.1 sends as text")


def basic_auth_password(authorization_key: str) -> bytes:
    """The HTTP Basic password an AuthorizationKey stands for: its bytes when it is the
    hexadecimal form, else its text."""
    if _HEX_PASSWORD.fullmatch(authorization_key):
        return bytes.fromhex(authorization_key)
    return authorization_key.encode("utf-8")


def basic_authorization(charge_point_id: str, authorization_key: str, plain: bool = False) -> str:
    """The ``Authorization`` header value: ``Basic base64(<chargeBoxId>:<password>)`` (RFC 7617);
    ``plain``: the key is the password's text (OCPP 2.0.1), never its hexadecimal form."""
    password = authorization_key.encode("utf-8") if plain else basic_auth_password(authorization_key)
    credentials = charge_point_id.encode("utf-8") + b":" + password
    return "Basic " + base64.b64encode(credentials).decode("ascii")


def parse_basic_authorization(header: str | None) -> tuple[str, bytes] | None:
    """(user id, password bytes) of an ``Authorization: Basic`` header; None when it is not one."""
    if not header:
        return None
    scheme, _, encoded = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True)
    except ValueError:
        return None
    user, colon, password = decoded.partition(b":")
    if not colon:
        return None
    return user.decode("utf-8", errors="replace"), password


# ---------------------------------------------------------------------------
# Connection parameters


@dataclass(frozen=True)
class SecuritySettings:
    """What decides how the charger connects: the two OCPP keys and the installer's files."""

    profile: int
    authorization_key: str = field(default="", repr=False)
    """As stored (see the module docstring); empty when none is set."""
    ca_file: Path | None = None
    client_cert_file: Path | None = None
    client_key_file: Path | None = None
    extra_ca_file: Path | None = None
    """CentralSystemRootCertificates installed by the central system (InstallCertificate),
    trusted beside ``ca_file``."""
    plain_password: bool = False
    """OCPP 2.0.1: ``authorization_key`` is SecurityCtrlr.BasicAuthPassword, the text itself."""

    def credentials(self) -> tuple[int, str]:
        """What the connection depends on among the keys the central system may change."""
        return self.profile, self.authorization_key if self.profile in PROFILES_WITH_PASSWORD else ""


@dataclass(frozen=True)
class ConnectionParameters:
    """Arguments for ``websockets.asyncio.client.connect``."""

    url: str
    profile: int
    ssl_context: ssl.SSLContext | None
    """Set for a wss:// URL, None for ws://."""
    headers: dict[str, str] = field(default_factory=dict, repr=False)
    """``additional_headers``; holds the Basic credentials, so never shown."""


def connection_parameters(url: str, charge_point_id: str, settings: SecuritySettings) -> ConnectionParameters:
    """How to connect to ``url`` (which already ends with the chargeBoxId) with ``settings``.

    Raises SecuritySettingsError naming the setting when the profile's requirements are not
    met: profile 2 or 3 with a ws:// URL, profile 1 or 2 without a valid AuthorizationKey,
    profile 3 without a client certificate and key, or a file that cannot be read.
    """
    profile = settings.profile
    if profile not in PROFILES:
        raise SecuritySettingsError(f"SecurityProfile {profile} does not exist; expected 0 to 3")
    scheme = urlsplit(url).scheme
    if profile in PROFILES_WITH_TLS and scheme != "wss":
        raise SecuritySettingsError(
            f"security profile {profile} ({PROFILES[profile]}) needs a wss:// URL; "
            f"ocpp.csms_url starts with {scheme}://")
    headers = {}
    if profile in PROFILES_WITH_PASSWORD:
        if not settings.authorization_key:
            raise SecuritySettingsError(
                f"security profile {profile} ({PROFILES[profile]}) needs a password: set "
                "ocpp.authorization_key, or the central system sets the AuthorizationKey key")
        if settings.plain_password:
            if problem := basic_auth_password_problem(settings.authorization_key):
                raise SecuritySettingsError(f"BasicAuthPassword (ocpp.authorization_key): {problem}")
        elif problem := authorization_key_problem(settings.authorization_key):
            raise SecuritySettingsError(f"AuthorizationKey (ocpp.authorization_key): {problem}")
        headers["Authorization"] = basic_authorization(charge_point_id, settings.authorization_key,
                                                       settings.plain_password)
    if profile == 3 and (settings.client_cert_file is None or settings.client_key_file is None):
        raise SecuritySettingsError(
            f"security profile 3 ({PROFILES[3]}) needs ocpp.client_cert_file and ocpp.client_key_file")
    context = None
    if scheme == "wss":
        context = tls_context(settings.ca_file,
                              settings.client_cert_file if profile == 3 else None,
                              settings.client_key_file if profile == 3 else None,
                              settings.extra_ca_file)
    return ConnectionParameters(url, profile, context, headers)


def tls_context(ca_file: Path | None, client_cert_file: Path | None = None,
                client_key_file: Path | None = None, extra_ca_file: Path | None = None) -> ssl.SSLContext:
    """A client context: TLS 1.2 or later, the server's certificate and hostname always verified
    (against ``ca_file``, or the system's CA store without one), and the client certificate
    when both of its files are given. SecuritySettingsError names the file that cannot be used."""
    try:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH,
                                             cafile=str(ca_file) if ca_file else None)
    except (OSError, ssl.SSLError) as error:
        raise SecuritySettingsError(f"ocpp.ca_file: cannot use {ca_file}: {_reason(error)}") from None
    if extra_ca_file is not None:
        try:
            context.load_verify_locations(cafile=str(extra_ca_file))
        except (OSError, ssl.SSLError) as error:
            raise SecuritySettingsError(f"installed CentralSystemRootCertificates: cannot use {extra_ca_file}: "
                                        f"{_reason(error)}") from None
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(TLS12_CIPHERS)
    # create_default_context already sets both; stated here because nothing may weaken them.
    context.check_hostname = True
    context.verify_mode = ssl.CERT_REQUIRED
    if client_cert_file is not None and client_key_file is not None:
        for key, path in (("ocpp.client_cert_file", client_cert_file), ("ocpp.client_key_file", client_key_file)):
            if not os.access(path, os.R_OK):
                raise SecuritySettingsError(f"{key}: cannot read {path}")
        try:
            context.load_cert_chain(str(client_cert_file), str(client_key_file), password=_no_passphrase)
        except (OSError, ssl.SSLError) as error:
            raise SecuritySettingsError(
                f"ocpp.client_cert_file / ocpp.client_key_file: cannot use {client_cert_file} with "
                f"{client_key_file}: {_reason(error)}") from None
    return context


def _no_passphrase() -> bytes:
    # An encrypted key would make OpenSSL prompt on a terminal the service does not have.
    raise SecuritySettingsError("ocpp.client_key_file: the key is encrypted; store it without a passphrase, "
                                "readable by the evcp user only")


def _reason(error: BaseException) -> str:
    if isinstance(error, ssl.SSLError) and error.reason:
        return error.reason.lower().replace("_", " ")
    return getattr(error, "strerror", None) or str(error) or type(error).__name__


def world_readable(path: Path) -> bool:
    """True when every user of the machine may read ``path`` (a private key should not be)."""
    try:
        return bool(path.stat().st_mode & stat.S_IROTH)
    except OSError:
        return False


def restrict_to_owner(paths: Iterable[Path]) -> list[str]:
    """Make each existing file readable and writable by its owner only; returns the problems."""
    problems = []
    for path in paths:
        try:
            if path.exists() and path.stat().st_mode & 0o077:
                path.chmod(0o600)
        except OSError as error:
            problems.append(f"{path}: {error.strerror or error}")
    return problems


# ---------------------------------------------------------------------------
# Why a connection attempt failed


@dataclass(frozen=True)
class HandshakeFailure:
    """A failed connection attempt: what happened, as a phrase following "central system <URL>",
    and the whitepaper's security event type for it, if there is one."""

    reason: str
    event_type: str | None = None


class PendingFailures:
    """Connection failures that have a security event type, each reported once the central
    system can be reached again (1.6 whitepaper "Security events"; 2.0.1 Part 2 A04), with how
    often it happened and since when."""

    def __init__(self) -> None:
        self._pending: dict[str, tuple[float, int, str]] = {}

    def failed(self, failure: HandshakeFailure) -> None:
        if failure.event_type:
            since, attempts, _ = self._pending.get(failure.event_type, (time.time(), 0, ""))
            self._pending[failure.event_type] = (since, attempts + 1, failure.reason)

    def report_to(self, report: Callable[..., None]) -> None:
        """Connected: ``report(event_type, info, at=since)`` for each, then none is pending."""
        for event_type, (since, attempts, reason) in sorted(self._pending.items()):
            times = "once" if attempts == 1 else f"{attempts} times"
            report(event_type, f"{reason} ({times} since {timestamp(since)})", at=since)
        self._pending.clear()


def classify_failure(error: BaseException, profile: int) -> HandshakeFailure:
    """What went wrong in a connection attempt that raised ``error`` before the websocket opened."""
    if isinstance(error, SecuritySettingsError):
        return HandshakeFailure(f"not contacted: {error}")
    if isinstance(error, websockets.InvalidStatus):
        status = error.response.status_code
        if status in (401, 403):
            check = "the client certificate" if profile == 3 else "the AuthorizationKey"
            return HandshakeFailure(f"refused the connection: HTTP {status} (credentials refused); check {check}",
                                    "FailedToAuthenticateAtCsms")
        return HandshakeFailure(f"refused the connection: HTTP {status}")
    if isinstance(error, ssl.SSLCertVerificationError):
        return HandshakeFailure(f"is not trusted: TLS certificate verification failed: {certificate_problem(error)}",
                                "InvalidCentralSystemCertificate")
    if isinstance(error, ssl.SSLError):
        reason = _reason(error)
        if error.reason in _TLS_VERSION_REASONS:
            return HandshakeFailure(f"offers no TLS version the charger accepts (1.2 or later): {reason}",
                                    "InvalidTLSVersion")
        if error.reason in _TLS_CIPHER_REASONS:
            return HandshakeFailure(f"offers no TLS cipher suite the charger accepts: {reason}",
                                    "InvalidTLSCipherSuite")
        return HandshakeFailure(f"TLS handshake failed: {reason}")
    if isinstance(error, websockets.InvalidMessage) and profile in PROFILES_WITH_TLS:
        # With TLS 1.3 a server that refuses the client certificate says so after the
        # handshake: the client only sees the connection close before the HTTP answer.
        hint = "; it may have refused the client certificate" if profile == 3 else ""
        return HandshakeFailure(f"closed the connection during the handshake{hint}")
    return HandshakeFailure(f"failed: {error or type(error).__name__}")


def certificate_problem(error: ssl.SSLCertVerificationError) -> str:
    """OpenSSL's verification failure in words: "hostname mismatch (...)", "self-signed certificate"..."""
    message = (error.verify_message or error.reason or str(error)).rstrip(".")
    if error.verify_code == _HOSTNAME_MISMATCH:
        detail = message.split(",", 1)[1].strip() if "," in message else message
        return f"hostname mismatch ({detail})"
    return message
