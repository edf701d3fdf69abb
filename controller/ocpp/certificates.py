"""Certificates of the OCPP 1.6 security whitepaper (edition 2): the root certificates the
Central System installs, the Charge Point certificate it has signed, firmware signatures.

- Root certificates (use cases M03, M04, M05: GetInstalledCertificateIds, DeleteCertificate,
  InstallCertificate): CentralSystemRootCertificate verifies the Central System's TLS
  certificate and the Charge Point certificate it returns; ManufacturerRootCertificate
  verifies firmware signing certificates. Both kinds count against CertificateStoreMaxLength,
  the most root/CA certificates the Charge Point holds.
- The Charge Point certificate (use case A02, "Update Charge Point Certificate by request of
  Central System"; OCTT TC_074, TC_077): a new key pair and a CSR for SignCertificate.req; the
  chain of CertificateSigned.req, once verified, becomes the client certificate of security
  profile 3. The private key never leaves the directory (whitepaper A02: it never leaves the
  Charge Point): nothing here returns, logs or prints it.
- Secure firmware update (use case L01; OCTT TC_080, TC_081): the signing certificate must
  lead to an installed ManufacturerRootCertificate, and the signature (SHA-256) must match the
  whole firmware file.

Certificates are identified as the whitepaper's CertificateHashDataType: the CertID of OCSP
(RFC 6960 §4.1.1), that is hashes of the issuer's name and of the issuer's public key, and the
serial number.

Everything is kept as files in one directory, so that it survives a restart:

- ``<certificateType>-<SHA-256 fingerprint>.pem``: one installed root certificate;
- ``tls-central-system-roots.pem``: the CentralSystemRootCertificates as one CA bundle for TLS;
- ``pending-charge-point.key``: the key pair of the last CSR, until its certificate arrives;
- ``charge-point-<SHA-256 fingerprint>.pem`` and ``.key``: an accepted Charge Point
  certificate chain and its key.

Keys are written readable by the owner only (0600). Nothing here uses the network or a clock
of its own: time comes from the ``now`` given to the store.
"""

from __future__ import annotations

import base64
import datetime
import logging
import os
import time
from pathlib import Path
from typing import Callable

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from cryptography.x509.oid import NameOID

log = logging.getLogger("evcp.ocpp")

CENTRAL_SYSTEM_ROOT = "CentralSystemRootCertificate"
MANUFACTURER_ROOT = "ManufacturerRootCertificate"
#: CertificateUseEnumType of InstallCertificate.req and GetInstalledCertificateIds.req.
CERTIFICATE_TYPES = (CENTRAL_SYSTEM_ROOT, MANUFACTURER_ROOT)

#: HashAlgorithmEnumType of CertificateHashDataType.
HASH_ALGORITHMS: dict[str, Callable[[], hashes.HashAlgorithm]] = {
    "SHA256": hashes.SHA256, "SHA384": hashes.SHA384, "SHA512": hashes.SHA512,
}

_CENTRAL_SYSTEM_BUNDLE = "tls-central-system-roots.pem"
_PENDING_KEY = "pending-charge-point.key"
_CHARGE_POINT_PREFIX = "charge-point-"
_PRIVATE = 0o600
_PUBLIC = 0o644
_FIRMWARE_CHUNK_BYTES = 1 << 16


class CertificateStore:
    """The charger's certificates, kept in ``directory``.

    ``max_certificates`` is CertificateStoreMaxLength, ``max_chain_size`` is
    CertificateSignedMaxChainSize (bytes of the PEM text of CertificateSigned.req);
    ``now`` returns the time as seconds since the epoch.
    """

    def __init__(self, directory: Path, max_certificates: int, max_chain_size: int,
                 now: Callable[[], float] = time.time) -> None:
        self.directory = Path(directory)
        self.max_certificates = max_certificates
        self.max_chain_size = max_chain_size
        self._now = now

    def __repr__(self) -> str:
        return f"CertificateStore({str(self.directory)!r})"

    # ------------------------------------------------------------------------------------
    # Root certificates: InstallCertificate, GetInstalledCertificateIds, DeleteCertificate

    def install(self, certificate_type: str, pem: str) -> tuple[str, str]:
        """InstallCertificate (use case M05): (status, why).

        "Accepted" once the certificate is stored (a certificate already installed is
        accepted again and kept once); "Rejected" when it is not one PEM certificate of a CA
        valid now, the type is unknown, or CertificateStoreMaxLength certificates are
        installed already; "Failed" when it cannot be written.
        """
        # Whitepaper CertificateStatusEnumType: Rejected when the certificate is invalid or
        # incorrect, or when more certificates would be installed than allowed; Failed when it
        # is valid and correct but could not be installed for another reason.
        if certificate_type not in CERTIFICATE_TYPES:
            return "Rejected", f"unknown certificateType {certificate_type!r}"
        try:
            certificates = parse_certificates(pem)
        except ValueError as error:
            return "Rejected", str(error)
        if len(certificates) != 1:
            return "Rejected", f"expected one certificate, got {len(certificates)}"
        certificate = certificates[0]
        if not is_ca(certificate):
            return "Rejected", f"{describe(certificate)} is not a CA certificate (no basicConstraints CA:TRUE)"
        if problem := validity_problem(certificate, self._moment()):
            return "Rejected", problem
        path = self.directory / _root_file_name(certificate_type, certificate)
        if path.exists():
            return "Accepted", f"{describe(certificate)} is installed already"
        installed = len(self._root_files())
        if installed >= self.max_certificates:
            return "Rejected", (f"{installed} certificates are installed, as many as "
                                f"CertificateStoreMaxLength ({self.max_certificates}) allows")
        try:
            _write_atomically(path, _pem(certificate), _PUBLIC)
        except OSError as error:
            return "Failed", f"cannot store {path.name}: {error.strerror or error}"
        return "Accepted", f"installed {describe(certificate)}"

    def installed_ids(self, certificate_type: str) -> tuple[str, list[dict]]:
        """GetInstalledCertificateIds (use case M03): ("Accepted", hash data of each installed
        certificate of the type, SHA-256) or ("NotFound", []) when there is none."""
        roots = self.roots(certificate_type)
        if not roots:
            return "NotFound", []
        candidates = self._all_roots()
        return "Accepted", [certificate_hash_data(root, _issuer_among(root, candidates)) for root in roots]

    def delete(self, hash_data: dict, protect_last_central_system_root: bool = False) -> str:
        """DeleteCertificate (use case M04): "Accepted" once every installed root certificate
        matching ``hash_data`` (computed with its hashAlgorithm) is removed; "NotFound" when
        none matches; "Failed" when it names the Charge Point certificate, when it would
        remove the last CentralSystemRootCertificate while
        ``protect_last_central_system_root``, or when a file cannot be removed."""
        algorithm = hash_data.get("hashAlgorithm")
        if algorithm not in HASH_ALGORITHMS:
            return "NotFound"
        candidates = self._all_roots()
        matching = [(path, certificate_type) for path, certificate_type, root in self._root_entries()
                    if hash_data_matches(hash_data, certificate_hash_data(
                        root, _issuer_among(root, candidates), algorithm))]
        if not matching:
            # Whitepaper M04: the Charge Point certificate cannot be deleted this way.
            if self._names_client_certificate(hash_data, algorithm, candidates):
                return "Failed"
            return "NotFound"
        if protect_last_central_system_root:
            doomed = {path for path, _ in matching}
            remaining = [path for path, certificate_type, _ in self._root_entries()
                         if certificate_type == CENTRAL_SYSTEM_ROOT and path not in doomed]
            if any(t == CENTRAL_SYSTEM_ROOT for _, t in matching) and not remaining:
                # The TLS connection of security profiles 2 and 3 is verified with it.
                return "Failed"
        try:
            for path, _ in matching:
                path.unlink(missing_ok=True)
        except OSError:
            return "Failed"
        return "Accepted"

    def roots(self, certificate_type: str) -> list[x509.Certificate]:
        """The installed root certificates of the type, in a stable order."""
        return [root for _, t, root in self._root_entries() if t == certificate_type]

    def central_system_ca_file(self) -> Path | None:
        """A PEM bundle of the installed CentralSystemRootCertificates, to verify the Central
        System's TLS certificate with; None when none is installed. Rewritten only when the
        installed certificates changed (OSError when that fails)."""
        path = self.directory / _CENTRAL_SYSTEM_BUNDLE
        roots = self.roots(CENTRAL_SYSTEM_ROOT)
        if not roots:
            path.unlink(missing_ok=True)
            return None
        bundle = b"".join(_pem(root) for root in roots)
        try:
            current = path.read_bytes()
        except OSError:
            current = None
        if current != bundle:
            _write_atomically(path, bundle, _PUBLIC)
        return path

    # ------------------------------------------------------------------------------------
    # The Charge Point certificate: SignCertificate, CertificateSigned

    def create_signing_request(self, charge_point_id: str, cpo_name: str, serial_number: str | None) -> str:
        """A new key pair (EC P-256), kept as the pending key, and the PEM CSR of its public
        key for SignCertificate.req: CN = ``charge_point_id``, O = ``cpo_name`` (CpoName),
        serialNumber = ``serial_number`` when given. A pending key from an earlier request is
        replaced. ValueError when ``cpo_name`` is empty; OSError when the key cannot be stored."""
        # Whitepaper A02: the value of the CpoName key goes into the organizationName (O) of the
        # CSR's subject. The whitepaper (and OCTT TC_087) want the Charge
        # Point's serial number as CN; the charge point id is used, the name the Central System
        # knows the charger by (the last segment of the connection URL), and the serial number
        # goes into the serialNumber attribute.
        if not cpo_name:
            raise ValueError("CpoName is not set; the certificate signing request needs it as its O")
        attributes = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, cpo_name),
                      x509.NameAttribute(NameOID.COMMON_NAME, charge_point_id)]
        if serial_number:
            attributes.append(x509.NameAttribute(NameOID.SERIAL_NUMBER, serial_number))
        # Whitepaper "Certificate properties": EC keys of at least 224 bits (or RSA of 2048);
        # P-256 serves the ECDHE-ECDSA cipher suites the charger offers.
        key = ec.generate_private_key(ec.SECP256R1())
        request = (x509.CertificateSigningRequestBuilder()
                   .subject_name(x509.Name(attributes))
                   .sign(key, hashes.SHA256()))
        _write_atomically(self.directory / _PENDING_KEY, _private_pem(key), _PRIVATE)
        return request.public_bytes(serialization.Encoding.PEM).decode("ascii")

    def accept_signed_certificate(self, pem_chain: str, trusted_roots: list[Path]) -> tuple[bool, str]:
        """CertificateSigned (use case A02): (accepted, why).

        Accepted when the chain (leaf first, then sub-CA certificates) is at most
        CertificateSignedMaxChainSize bytes, its leaf is for the pending key and not expired,
        and every link up to a trust anchor is signed and valid now. Trust anchors are the
        installed CentralSystemRootCertificates and the certificates in the ``trusted_roots``
        files. The pending key and the chain then become a client certificate (in force from
        its "not valid before", see ``client_certificate``). When refused, nothing changes.
        """
        size = len(pem_chain.encode("utf-8"))
        if size > self.max_chain_size:
            return False, (f"the certificate chain has {size} bytes, more than "
                           f"CertificateSignedMaxChainSize ({self.max_chain_size})")
        try:
            chain = parse_certificates(pem_chain)
        except ValueError as error:
            return False, str(error)
        pending = self._pending_key()
        if pending is None:
            return False, "no certificate signing request is pending"
        key_pem, key = pending
        leaf = chain[0]
        if _spki(leaf.public_key()) != _spki(key.public_key()):
            return False, f"{describe(leaf)} is not for the key of the last certificate signing request"
        moment = self._moment()
        # Only an expired leaf is refused: one not yet valid is kept for later (whitepaper A02,
        # the Charge Point switches to the new certificate once its "Not valid before" is reached).
        if moment > leaf.not_valid_after_utc:
            return False, f"{describe(leaf)} expired on {_iso(leaf.not_valid_after_utc)}"
        anchors = self.roots(CENTRAL_SYSTEM_ROOT) + _load_certificate_files(trusted_roots)
        if not anchors:
            return False, "no CentralSystemRootCertificate is installed and no CA file is given to verify it with"
        if problem := chain_problem(chain, anchors, moment):
            return False, problem
        stem = _CHARGE_POINT_PREFIX + _fingerprint(leaf)
        try:
            # The key first: a chain file is only used when its key file is there.
            _write_atomically(self.directory / f"{stem}.key", key_pem, _PRIVATE)
            _write_atomically(self.directory / f"{stem}.pem", b"".join(_pem(c) for c in chain), _PUBLIC)
        except OSError as error:
            return False, f"cannot store the certificate: {error.strerror or error}"
        (self.directory / _PENDING_KEY).unlink(missing_ok=True)
        if moment < leaf.not_valid_before_utc:
            return True, f"accepted {describe(leaf)}, in use from {_iso(leaf.not_valid_before_utc)}"
        return True, f"accepted {describe(leaf)}"

    def client_certificate(self) -> tuple[Path, Path] | None:
        """(certificate chain file, key file) of the Charge Point certificate in force: the
        accepted one with the latest "not valid before" that is not in the future; None before
        one was accepted. Certificates it supersedes are removed."""
        moment = self._moment()
        in_force: list[tuple[datetime.datetime, Path, Path]] = []
        for chain_path in sorted(self.directory.glob(f"{_CHARGE_POINT_PREFIX}*.pem")):
            key_path = chain_path.with_suffix(".key")
            if not key_path.exists():
                continue
            try:
                leaf = parse_certificates(chain_path.read_text("ascii"))[0]
            except (OSError, ValueError, UnicodeDecodeError):
                continue
            if leaf.not_valid_before_utc <= moment:
                in_force.append((leaf.not_valid_before_utc, chain_path, key_path))
        if not in_force:
            return None
        in_force.sort()
        _, chain_path, key_path = in_force[-1]
        for _, old_chain, old_key in in_force[:-1]:
            old_chain.unlink(missing_ok=True)
            old_key.unlink(missing_ok=True)
        return chain_path, key_path

    def connection_files(self, cert_file: Path | None, key_file: Path | None
                         ) -> tuple[Path | None, Path | None, Path | None]:
        """(client certificate, its key, extra CA bundle) of the next connection: a charge point
        certificate signed at the central system's request replaces the installer's
        ``cert_file`` / ``key_file`` (whitepaper "Update Charge Point Certificate", 2.0.1 A02),
        and the installed central system roots are trusted too. An unreadable store is logged
        and the installer's files are used."""
        extra_ca_file = None
        try:
            signed = self.client_certificate()
            if signed is not None:
                cert_file, key_file = signed
            extra_ca_file = self.central_system_ca_file()
        except OSError as error:
            log.error("certificate store %s unreadable: %s", self.directory, error)
        return cert_file, key_file, extra_ca_file

    # ------------------------------------------------------------------------------------
    # Secure firmware update: SignedUpdateFirmware

    def check_signing_certificate(self, pem: str) -> str | None:
        """Why the firmware signing certificate of SignedUpdateFirmware.req cannot be trusted
        (status InvalidCertificate), or None: it must be valid now and lead to an installed
        ManufacturerRootCertificate, directly or through the sub-CA certificates after it."""
        try:
            chain = parse_signing_certificate(pem)
        except ValueError as error:
            return f"signing certificate: {error}"
        anchors = self.roots(MANUFACTURER_ROOT)
        if not anchors:
            return "no ManufacturerRootCertificate is installed to verify the signing certificate with"
        moment = self._moment()
        return validity_problem(chain[0], moment) or chain_problem(chain, anchors, moment)

    def verify_firmware_signature(self, firmware: Path, signature_b64: str, signing_certificate_pem: str) -> str | None:
        """Why ``firmware`` cannot be installed (status InvalidSignature), or None when
        ``signature_b64`` is the signature of the whole file by the signing certificate's key:
        RSA (PKCS#1 v1.5 or PSS) or ECDSA over SHA-256. The signing certificate is checked
        again as ``check_signing_certificate`` does, so untrusted firmware never passes."""
        if problem := self.check_signing_certificate(signing_certificate_pem):
            return problem
        public_key = parse_signing_certificate(signing_certificate_pem)[0].public_key()
        try:
            signature = base64.b64decode("".join(signature_b64.split()), validate=True)
        except ValueError:
            return "the firmware signature is not base64"
        digest = hashes.Hash(hashes.SHA256())
        try:
            with open(firmware, "rb") as file:
                while chunk := file.read(_FIRMWARE_CHUNK_BYTES):
                    digest.update(chunk)
        except OSError as error:
            return f"cannot read the firmware {firmware}: {error.strerror or error}"
        if not isinstance(public_key, (rsa.RSAPublicKey, ec.EllipticCurvePublicKey)):
            return f"the signing certificate's key ({type(public_key).__name__}) is neither RSA nor EC"
        if not signature_matches(public_key, signature, digest.finalize()):
            return "the firmware signature does not match the firmware and the signing certificate"
        return None

    # ------------------------------------------------------------------------------------

    def _moment(self) -> datetime.datetime:
        return datetime.datetime.fromtimestamp(self._now(), tz=datetime.timezone.utc)

    def _root_files(self) -> list[tuple[Path, str]]:
        files = []
        for certificate_type in CERTIFICATE_TYPES:
            files += [(path, certificate_type) for path in sorted(self.directory.glob(f"{certificate_type}-*.pem"))]
        return files

    def _root_entries(self) -> list[tuple[Path, str, x509.Certificate]]:
        entries = []
        for path, certificate_type in self._root_files():
            try:
                entries.append((path, certificate_type, parse_certificates(path.read_text("ascii"))[0]))
            except (OSError, ValueError, UnicodeDecodeError):
                continue  # damaged or half-written: not a usable certificate
        return entries

    def _all_roots(self) -> list[x509.Certificate]:
        return [root for _, _, root in self._root_entries()]

    def _pending_key(self) -> tuple[bytes, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey] | None:
        try:
            key_pem = (self.directory / _PENDING_KEY).read_bytes()
            return key_pem, serialization.load_pem_private_key(key_pem, password=None)
        except (OSError, ValueError, TypeError, UnsupportedAlgorithm):
            return None

    def _names_client_certificate(self, hash_data: dict, algorithm: str, candidates: list[x509.Certificate]) -> bool:
        for chain_path in self.directory.glob(f"{_CHARGE_POINT_PREFIX}*.pem"):
            try:
                chain = parse_certificates(chain_path.read_text("ascii"))
            except (OSError, ValueError, UnicodeDecodeError):
                continue
            issuer = _issuer_among(chain[0], chain[1:] + candidates)
            if hash_data_matches(hash_data, certificate_hash_data(chain[0], issuer, algorithm)):
                return True
        return False


# ----------------------------------------------------------------------------------------
# Certificates as data


def parse_certificates(pem: str) -> list[x509.Certificate]:
    """The certificates of PEM text, in order; ValueError saying why when there is none or
    one cannot be read."""
    try:
        certificates = x509.load_pem_x509_certificates(pem.encode("utf-8"))
    except ValueError:
        raise ValueError("not a PEM-encoded X.509 certificate") from None
    if not certificates:
        raise ValueError("not a PEM-encoded X.509 certificate")
    return certificates


def parse_signing_certificate(text: str) -> list[x509.Certificate]:
    """A firmware signing certificate: PEM (whitepaper edition 2) or the hexadecimal form of
    its DER encoding (edition 1); ValueError when it is neither."""
    if "-----BEGIN" in text:
        return parse_certificates(text)
    try:
        return [x509.load_der_x509_certificate(bytes.fromhex("".join(text.split())))]
    except ValueError:
        raise ValueError("neither PEM nor hexadecimal DER of an X.509 certificate") from None


def certificate_hash_data(certificate: x509.Certificate, issuer: x509.Certificate | None = None,
                          hash_algorithm: str = "SHA256") -> dict:
    """CertificateHashDataType of ``certificate``, signed by ``issuer`` (None: by itself).

    As OCSP CertID (RFC 6960 §4.1.1): the hash of the DER encoding of the issuer's name, the
    hash of the issuer's public key (the value of the BIT STRING subjectPublicKey), and the
    serial number in lowercase hexadecimal without leading zeros.
    """
    algorithm = HASH_ALGORITHMS[hash_algorithm]
    issuer_key = (issuer or certificate).public_key()
    return {
        "hashAlgorithm": hash_algorithm,
        "issuerNameHash": _hash(algorithm(), _raw_issuer_name(certificate)).hex(),
        "issuerKeyHash": _hash(algorithm(), _subject_public_key_bits(_spki(issuer_key))).hex(),
        "serialNumber": format(certificate.serial_number, "x"),
    }


def hash_data_matches(requested: dict, computed: dict) -> bool:
    """Whether CertificateHashDataType ``requested`` names the certificate of ``computed``
    (same algorithm): hashes and serial number compared ignoring letter case, the serial
    number also ignoring leading zeros."""
    def serial(value: object) -> str:
        return str(value).strip().lower().lstrip("0") or "0"
    return (requested.get("hashAlgorithm") == computed["hashAlgorithm"]
            and str(requested.get("issuerNameHash", "")).strip().lower() == computed["issuerNameHash"]
            and str(requested.get("issuerKeyHash", "")).strip().lower() == computed["issuerKeyHash"]
            and serial(requested.get("serialNumber", "")) == serial(computed["serialNumber"]))


def is_ca(certificate: x509.Certificate) -> bool:
    """Whether the certificate may sign others (basicConstraints CA:TRUE, RFC 5280 §4.2.1.9)."""
    try:
        return certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        return False


def validity_problem(certificate: x509.Certificate, moment: datetime.datetime) -> str | None:
    """Why the certificate is not valid at ``moment`` (expired or not yet valid), or None."""
    if moment < certificate.not_valid_before_utc:
        return f"{describe(certificate)} is not valid before {_iso(certificate.not_valid_before_utc)}"
    if moment > certificate.not_valid_after_utc:
        return f"{describe(certificate)} expired on {_iso(certificate.not_valid_after_utc)}"
    return None


def chain_problem(chain: list[x509.Certificate], anchors: list[x509.Certificate],
                  moment: datetime.datetime) -> str | None:
    """Why ``chain[0]`` does not lead to one of ``anchors``, or None.

    Each step goes to a certificate that signed the current one: an anchor ends the path, a
    certificate of ``chain[1:]`` continues it. Every certificate on the path after the leaf
    must be valid at ``moment``, and the ones of ``chain[1:]`` must be CA certificates. The
    leaf's own dates are for the caller to judge.
    """
    current = chain[0]
    unused = list(chain[1:])
    while True:
        for anchor in anchors:
            if signed_by(current, anchor):
                return validity_problem(anchor, moment)
        issuer = next((candidate for candidate in unused if signed_by(current, candidate)), None)
        if issuer is None:
            return f"{describe(current)} is not signed by a trusted certificate ({_names(anchors)})"
        if not is_ca(issuer):
            return f"{describe(issuer)} is not a CA certificate (no basicConstraints CA:TRUE)"
        if problem := validity_problem(issuer, moment):
            return problem
        unused.remove(issuer)
        current = issuer


def signed_by(certificate: x509.Certificate, issuer: x509.Certificate) -> bool:
    """Whether ``issuer``'s name is the certificate's issuer and its key signed the certificate."""
    try:
        certificate.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    return True


def signature_matches(public_key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey, signature: bytes,
                      sha256_digest: bytes) -> bool:
    """Whether ``signature`` signs the data of ``sha256_digest`` with ``public_key``."""
    # Whitepaper L01 names RSA-PSS or ECSchnorr over SHA-256. ECSchnorr has no common
    # implementation; ECDSA and RSA PKCS#1 v1.5 (what ``openssl dgst -sha256 -sign`` makes)
    # are accepted as well.
    prehashed = Prehashed(hashes.SHA256())
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        schemes: list[tuple] = [(ec.ECDSA(prehashed),)]
    else:
        schemes = [(padding.PKCS1v15(), prehashed),
                   (padding.PSS(padding.MGF1(hashes.SHA256()), padding.PSS.AUTO), prehashed)]
    for scheme in schemes:
        try:
            public_key.verify(signature, sha256_digest, *scheme)
            return True
        except (InvalidSignature, ValueError):
            continue
    return False


def describe(certificate: x509.Certificate) -> str:
    """How a certificate is named in messages: its subject and serial number."""
    return f'certificate "{certificate.subject.rfc4514_string()}" (serial {certificate.serial_number:x})'


# ----------------------------------------------------------------------------------------
# Encodings and files


def _issuer_among(certificate: x509.Certificate, candidates: list[x509.Certificate]) -> x509.Certificate | None:
    """The issuer of the certificate among ``candidates``; None when it is self-signed or its
    issuer is not known (its own key then stands in for the issuer's in its hash data)."""
    if certificate.issuer == certificate.subject:
        return None
    return next((candidate for candidate in candidates if signed_by(certificate, candidate)), None)


def _root_file_name(certificate_type: str, certificate: x509.Certificate) -> str:
    return f"{certificate_type}-{_fingerprint(certificate)}.pem"


def _fingerprint(certificate: x509.Certificate) -> str:
    return certificate.fingerprint(hashes.SHA256()).hex()


def _pem(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)


def _private_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    # Unencrypted PKCS#8: the TLS stack loads it without a passphrase; the file mode protects it.
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _spki(public_key) -> bytes:
    return public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _hash(algorithm: hashes.HashAlgorithm, data: bytes) -> bytes:
    digest = hashes.Hash(algorithm)
    digest.update(data)
    return digest.finalize()


def _der_element(data: bytes, offset: int) -> tuple[int, int, int]:
    """(tag, start, end) of the content of the DER element at ``offset`` (X.690 §8.1)."""
    tag = data[offset]
    length = data[offset + 1]
    start = offset + 2
    if length & 0x80:
        count = length & 0x7F
        length = int.from_bytes(data[start:start + count], "big")
        start += count
    return tag, start, start + length


def _subject_public_key_bits(spki_der: bytes) -> bytes:
    """The value of the BIT STRING subjectPublicKey of a SubjectPublicKeyInfo (RFC 5280
    §4.1.2.7), without its unused-bits octet: what OCSP CertID hashes."""
    _, content, _ = _der_element(spki_der, 0)
    _, _, algorithm_end = _der_element(spki_der, content)
    tag, start, end = _der_element(spki_der, algorithm_end)
    if tag != 0x03:
        raise ValueError("SubjectPublicKeyInfo without a BIT STRING")
    return spki_der[start + 1:end]


def _raw_issuer_name(certificate: x509.Certificate) -> bytes:
    """The issuer Name of the certificate exactly as encoded in it (RFC 5280 §4.1: version,
    serialNumber, signature, issuer)."""
    tbs = certificate.tbs_certificate_bytes
    _, position, _ = _der_element(tbs, 0)
    tag, _, end = _der_element(tbs, position)
    if tag == 0xA0:  # [0] version
        position = end
    for _ in range(2):  # serialNumber, signature
        _, _, position = _der_element(tbs, position)
    _, _, end = _der_element(tbs, position)
    return tbs[position:end]


def _load_certificate_files(paths: list[Path]) -> list[x509.Certificate]:
    certificates = []
    for path in paths:
        try:
            certificates += parse_certificates(Path(path).read_text("ascii"))
        except (OSError, ValueError, UnicodeDecodeError):
            continue  # a missing CA file adds no trust anchor
    return certificates


def _names(certificates: list[x509.Certificate]) -> str:
    return "; ".join(certificate.subject.rfc4514_string() for certificate in certificates)


def _iso(moment: datetime.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _write_atomically(path: Path, data: bytes, mode: int) -> None:
    """Write ``path`` so that it holds either the old or the whole new content, with ``mode``
    from the start (a key is never readable by others, not even while written)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.unlink(missing_ok=True)
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(descriptor, "wb") as file:
            os.fchmod(file.fileno(), mode)  # the umask may have taken bits away
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
