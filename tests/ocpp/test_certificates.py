"""Certificate management of the security whitepaper (OCPP 1.6, edition 2): root certificates
(OCTT TC_075, TC_076), the Charge Point certificate (TC_074, TC_077) and firmware signatures
(TC_080, TC_081). Every certificate is made here with its own keys; the clock is fixed."""

from __future__ import annotations

import base64
import datetime
import ssl
import stat
from dataclasses import dataclass

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.ocsp import OCSPRequestBuilder
from cryptography.x509.oid import NameOID

from evcp.ocpp.certificates import (
    CENTRAL_SYSTEM_ROOT,
    MANUFACTURER_ROOT,
    CertificateStore,
    certificate_hash_data,
)

NOW = datetime.datetime(2025, 6, 1, 12, 0, tzinfo=datetime.timezone.utc)
DAY = datetime.timedelta(days=1)
YEAR = datetime.timedelta(days=365)
MAX_CHAIN_BYTES = 10_000


# --- certificates made for the tests ---------------------------------------------------------


@dataclass
class Keyed:
    certificate: x509.Certificate
    key: object

    @property
    def pem(self) -> str:
        return self.certificate.public_bytes(serialization.Encoding.PEM).decode()


def _ec_key():
    return ec.generate_private_key(ec.SECP256R1())


def make_certificate(common_name: str, *, issuer: Keyed | None = None, key=None, public_key=None, ca: bool = True,
          not_before: datetime.datetime = NOW - DAY, not_after: datetime.datetime = NOW + YEAR,
          serial: int | None = None) -> Keyed:
    """A certificate for ``common_name``; self-signed without ``issuer``."""
    key = key or _ec_key()
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    builder = (x509.CertificateBuilder()
               .subject_name(subject)
               .issuer_name(issuer.certificate.subject if issuer else subject)
               .public_key(public_key or key.public_key())
               .serial_number(serial or x509.random_serial_number())
               .not_valid_before(not_before)
               .not_valid_after(not_after)
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    return Keyed(builder.sign(issuer.key if issuer else key, hashes.SHA256()), key)


@pytest.fixture(scope="module")
def pki():
    """A Central System PKI (root, sub-CA), a manufacturer PKI, a foreign CA and odd certificates."""
    cs_root = make_certificate("CSMS Root CA")
    cs_sub = make_certificate("CSMS Sub CA", issuer=cs_root)
    mf_root = make_certificate("Manufacturer Root CA", key=rsa.generate_private_key(public_exponent=65537, key_size=2048),
                    serial=0x00_7F_01)
    return {
        "cs_root": cs_root,
        "cs_root_2": make_certificate("CSMS Root CA 2"),
        "cs_sub": cs_sub,
        "mf_root": mf_root,
        "mf_signer_rsa": make_certificate("Firmware Signer RSA", issuer=mf_root, ca=False,
                               key=rsa.generate_private_key(public_exponent=65537, key_size=2048)),
        "mf_signer_ec": make_certificate("Firmware Signer EC", issuer=mf_root, ca=False),
        "foreign": make_certificate("Foreign CA"),
        "expired": make_certificate("Expired CA", not_before=NOW - 2 * YEAR, not_after=NOW - YEAR),
        "future": make_certificate("Future CA", not_before=NOW + DAY, not_after=NOW + 2 * YEAR),
        "not_ca": make_certificate("Not a CA", ca=False),
    }


class Clock:
    def __init__(self) -> None:
        self.moment = NOW

    def __call__(self) -> float:
        return self.moment.timestamp()


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def store(tmp_path, clock):
    return CertificateStore(tmp_path / "certs", max_certificates=3, max_chain_size=MAX_CHAIN_BYTES, now=clock)


def ocsp_cert_id(certificate: x509.Certificate, issuer: x509.Certificate, algorithm=hashes.SHA256()) -> dict:
    """CertificateHashDataType computed independently, as the OCSP CertID of RFC 6960."""
    request = OCSPRequestBuilder().add_certificate(certificate, issuer, algorithm).build()
    return {
        "hashAlgorithm": algorithm.name.upper(),
        "issuerNameHash": request.issuer_name_hash.hex(),
        "issuerKeyHash": request.issuer_key_hash.hex(),
        "serialNumber": format(request.serial_number, "x"),
    }


def chain_pem(*certificates: Keyed) -> str:
    return "".join(item.pem for item in certificates)


# --- InstallCertificate and GetInstalledCertificateIds (TC_075) ------------------------------


def test_tc_075_1_installed_manufacturer_root_is_listed_with_its_cert_id(store, pki):
    root = pki["mf_root"].certificate
    status, _ = store.install(MANUFACTURER_ROOT, pki["mf_root"].pem)
    assert status == "Accepted"
    assert store.installed_ids(MANUFACTURER_ROOT) == ("Accepted", [ocsp_cert_id(root, root)])
    # The serial number 0x007F01 is given without leading zeros.
    assert store.installed_ids(MANUFACTURER_ROOT)[1][0]["serialNumber"] == "7f01"


def test_tc_075_2_installed_central_system_root_is_listed_under_its_type_only(store, pki):
    root = pki["cs_root"].certificate
    assert store.install(CENTRAL_SYSTEM_ROOT, pki["cs_root"].pem)[0] == "Accepted"
    assert store.installed_ids(CENTRAL_SYSTEM_ROOT) == ("Accepted", [ocsp_cert_id(root, root)])
    assert store.installed_ids(MANUFACTURER_ROOT) == ("NotFound", [])
    assert store.roots(CENTRAL_SYSTEM_ROOT) == [root]


def test_nothing_installed_is_not_found(store):
    assert store.installed_ids(CENTRAL_SYSTEM_ROOT) == ("NotFound", [])
    assert store.installed_ids(MANUFACTURER_ROOT) == ("NotFound", [])


def test_installed_sub_ca_is_hashed_with_its_installed_issuer_key(store, pki):
    store.install(CENTRAL_SYSTEM_ROOT, pki["cs_root"].pem)
    store.install(CENTRAL_SYSTEM_ROOT, pki["cs_sub"].pem)
    expected = [ocsp_cert_id(pki["cs_root"].certificate, pki["cs_root"].certificate),
                ocsp_cert_id(pki["cs_sub"].certificate, pki["cs_root"].certificate)]
    status, ids = store.installed_ids(CENTRAL_SYSTEM_ROOT)
    assert status == "Accepted"
    assert sorted(ids, key=str) == sorted(expected, key=str)


@pytest.mark.parametrize("name, why", [
    ("not_ca", "not a CA certificate"),
    ("expired", "expired on"),
    ("future", "not valid before"),
])
def test_certificate_that_cannot_be_a_root_is_rejected(store, pki, name, why):
    status, reason = store.install(CENTRAL_SYSTEM_ROOT, pki[name].pem)
    assert (status, why in reason) == ("Rejected", True)
    assert store.installed_ids(CENTRAL_SYSTEM_ROOT) == ("NotFound", [])


@pytest.mark.parametrize("text", ["", "hello", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"])
def test_text_that_is_no_pem_certificate_is_rejected(store, text):
    assert store.install(MANUFACTURER_ROOT, text) == ("Rejected", "not a PEM-encoded X.509 certificate")


def test_several_certificates_at_once_are_rejected(store, pki):
    status, reason = store.install(CENTRAL_SYSTEM_ROOT, chain_pem(pki["cs_root"], pki["cs_root_2"]))
    assert (status, reason) == ("Rejected", "expected one certificate, got 2")


def test_unknown_certificate_type_is_rejected(store, pki):
    assert store.install("V2GRootCertificate", pki["cs_root"].pem)[0] == "Rejected"


def test_identical_certificate_installed_twice_is_stored_once(store, pki):
    assert store.install(CENTRAL_SYSTEM_ROOT, pki["cs_root"].pem)[0] == "Accepted"
    assert store.install(CENTRAL_SYSTEM_ROOT, pki["cs_root"].pem)[0] == "Accepted"
    assert len(store.installed_ids(CENTRAL_SYSTEM_ROOT)[1]) == 1
    fingerprint = pki["cs_root"].certificate.fingerprint(hashes.SHA256()).hex()
    assert [p.name for p in store.directory.glob("*Certificate-*.pem")] == [
        f"{CENTRAL_SYSTEM_ROOT}-{fingerprint}.pem"]


def test_store_full_rejects_another_certificate_but_accepts_an_installed_one_again(store, pki):
    # CertificateStoreMaxLength (3 here) counts the certificates of both types.
    assert store.install(CENTRAL_SYSTEM_ROOT, pki["cs_root"].pem)[0] == "Accepted"
    assert store.install(CENTRAL_SYSTEM_ROOT, pki["cs_root_2"].pem)[0] == "Accepted"
    assert store.install(MANUFACTURER_ROOT, pki["mf_root"].pem)[0] == "Accepted"
    status, reason = store.install(MANUFACTURER_ROOT, pki["foreign"].pem)
    assert status == "Rejected"
    assert "CertificateStoreMaxLength (3)" in reason
    assert len(store.installed_ids(MANUFACTURER_ROOT)[1]) == 1
    assert store.install(CENTRAL_SYSTEM_ROOT, pki["cs_root"].pem)[0] == "Accepted"


def test_certificate_that_cannot_be_written_fails(tmp_path, pki, clock):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    store = CertificateStore(blocker / "certs", max_certificates=3, max_chain_size=MAX_CHAIN_BYTES, now=clock)
    status, reason = store.install(CENTRAL_SYSTEM_ROOT, pki["cs_root"].pem)
    assert status == "Failed"
    assert "cannot store" in reason


def test_installed_certificates_survive_a_new_store_over_the_same_directory(store, pki, clock):
    store.install(CENTRAL_SYSTEM_ROOT, pki["cs_root"].pem)
    store.install(MANUFACTURER_ROOT, pki["mf_root"].pem)
    again = CertificateStore(store.directory, max_certificates=3, max_chain_size=MAX_CHAIN_BYTES, now=clock)
    assert again.installed_ids(CENTRAL_SYSTEM_ROOT) == store.installed_ids(CENTRAL_SYSTEM_ROOT)
    assert again.roots(MANUFACTURER_ROOT) == [pki["mf_root"].certificate]


# --- DeleteCertificate (TC_076) --------------------------------------------------------------


def test_tc_076_delete_by_sha256_hash_data(store, pki):
    store.install(CENTRAL_SYSTEM_ROOT, pki["cs_root"].pem)
    store.install(CENTRAL_SYSTEM_ROOT, pki["cs_root_2"].pem)
    root, other = pki["cs_root"].certificate, pki["cs_root_2"].certificate
    assert store.delete(ocsp_cert_id(root, root)) == "Accepted"
    assert store.installed_ids(CENTRAL_SYSTEM_ROOT) == ("Accepted", [ocsp_cert_id(other, other)])


@pytest.mark.parametrize("algorithm", [hashes.SHA384(), hashes.SHA512()])
def test_tc_076_delete_by_hash_data_of_another_algorithm(store, pki, algorithm):
    store.install(MANUFACTURER_ROOT, pki["mf_root"].pem)
    root = pki["mf_root"].certificate
    hash_data = ocsp_cert_id(root, root, algorithm)
    # Letter case and leading zeros of the serial number do not matter.
    hash_data["serialNumber"] = "007F01"
    hash_data["issuerKeyHash"] = hash_data["issuerKeyHash"].upper()
    assert store.delete(hash_data) == "Accepted"
    assert store.installed_ids(MANUFACTURER_ROOT) == ("NotFound", [])


def test_delete_of_a_certificate_not_installed_is_not_found(store, pki):
    store.install(CENTRAL_SYSTEM_ROOT, pki["cs_root"].pem)
    foreign = pki["foreign"].certificate
    assert store.delete(ocsp_cert_id(foreign, foreign)) == "NotFound"
    root = pki["cs_root"].certificate
    wrong_serial = dict(ocsp_cert_id(root, root), serialNumber="1")
    assert store.delete(wrong_serial) == "NotFound"
    assert len(store.roots(CENTRAL_SYSTEM_ROOT)) == 1


def test_delete_with_a_hash_computed_by_another_algorithm_than_stated_is_not_found(store, pki):
    store.install(CENTRAL_SYSTEM_ROOT, pki["cs_root"].pem)
    root = pki["cs_root"].certificate
    mislabelled = dict(ocsp_cert_id(root, root, hashes.SHA384()), hashAlgorithm="SHA256")
    assert store.delete(mislabelled) == "NotFound"


def test_last_central_system_root_is_kept_when_protected(store, pki):
    store.install(CENTRAL_SYSTEM_ROOT, pki["cs_root"].pem)
    store.install(CENTRAL_SYSTEM_ROOT, pki["cs_root_2"].pem)
    first, second = pki["cs_root"].certificate, pki["cs_root_2"].certificate
    assert store.delete(ocsp_cert_id(first, first), protect_last_central_system_root=True) == "Accepted"
    assert store.delete(ocsp_cert_id(second, second), protect_last_central_system_root=True) == "Failed"
    assert store.roots(CENTRAL_SYSTEM_ROOT) == [second]
    assert store.delete(ocsp_cert_id(second, second)) == "Accepted"
    assert store.roots(CENTRAL_SYSTEM_ROOT) == []


def test_protection_does_not_keep_the_last_manufacturer_root(store, pki):
    store.install(MANUFACTURER_ROOT, pki["mf_root"].pem)
    root = pki["mf_root"].certificate
    assert store.delete(ocsp_cert_id(root, root), protect_last_central_system_root=True) == "Accepted"


# --- the CA bundle for TLS -------------------------------------------------------------------


def test_central_system_ca_file_bundles_the_installed_central_system_roots(store, pki):
    assert store.central_system_ca_file() is None
    store.install(CENTRAL_SYSTEM_ROOT, pki["cs_root"].pem)
    store.install(CENTRAL_SYSTEM_ROOT, pki["cs_root_2"].pem)
    store.install(MANUFACTURER_ROOT, pki["mf_root"].pem)
    bundle = store.central_system_ca_file()
    assert set(x509.load_pem_x509_certificates(bundle.read_bytes())) == {
        pki["cs_root"].certificate, pki["cs_root_2"].certificate}
    context = ssl.create_default_context(cafile=str(bundle))
    assert context.cert_store_stats()["x509_ca"] == 2
    for name in ("cs_root", "cs_root_2"):
        root = pki[name].certificate
        store.delete(ocsp_cert_id(root, root))
    assert store.central_system_ca_file() is None
    assert not bundle.exists()


# --- the Charge Point certificate (TC_074, TC_077) ---------------------------------------------


def request(store: CertificateStore) -> x509.CertificateSigningRequest:
    return x509.load_pem_x509_csr(store.create_signing_request("CP-1", "Example CPO", "SN-0042").encode())


def sign(csr: x509.CertificateSigningRequest, issuer: Keyed, **dates) -> Keyed:
    return make_certificate("CP-1", issuer=issuer, public_key=csr.public_key(), ca=False, **dates)


def test_signing_request_names_the_charge_point_and_the_cpo_and_keeps_its_key_private(store):
    text = store.create_signing_request("CP-1", "Example CPO", "SN-0042")
    csr = x509.load_pem_x509_csr(text.encode())
    assert csr.is_signature_valid
    subject = csr.subject
    assert subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "CP-1"
    assert subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "Example CPO"
    assert subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER)[0].value == "SN-0042"
    assert isinstance(csr.public_key(), ec.EllipticCurvePublicKey)
    assert csr.public_key().curve.name == "secp256r1"
    assert "PRIVATE" not in text
    key_files = list(store.directory.glob("*.key"))
    assert len(key_files) == 1
    assert stat.S_IMODE(key_files[0].stat().st_mode) == 0o600


def test_signing_request_without_serial_number_has_no_serial_number_attribute(store):
    csr = x509.load_pem_x509_csr(store.create_signing_request("CP-1", "Example CPO", None).encode())
    assert csr.subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER) == []


def test_signing_request_needs_a_cpo_name(store):
    with pytest.raises(ValueError, match="CpoName"):
        store.create_signing_request("CP-1", "", None)


def test_tc_074_signed_certificate_for_the_pending_key_becomes_the_client_certificate(store, pki):
    store.install(CENTRAL_SYSTEM_ROOT, pki["cs_root"].pem)
    assert store.client_certificate() is None
    csr = request(store)
    leaf = sign(csr, pki["cs_sub"])
    accepted, why = store.accept_signed_certificate(chain_pem(leaf, pki["cs_sub"]), trusted_roots=[])
    assert accepted, why
    assert "PRIVATE" not in why
    chain_file, key_file = store.client_certificate()
    assert x509.load_pem_x509_certificates(chain_file.read_bytes()) == [leaf.certificate, pki["cs_sub"].certificate]
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
    assert key.public_key() == csr.public_key()
    # The TLS stack takes the pair as the client certificate of security profile 3.
    ssl.create_default_context().load_cert_chain(str(chain_file), str(key_file))
    # The pending key was used up: the same chain again has no request to answer.
    assert store.accept_signed_certificate(chain_pem(leaf, pki["cs_sub"]), []) == (
        False, "no certificate signing request is pending")


def test_tc_074_chain_verified_by_the_installer_ca_file(store, pki, tmp_path):
    ca_file = tmp_path / "csms-ca.pem"
    ca_file.write_text(pki["cs_root"].pem)
    leaf = sign(request(store), pki["cs_root"])
    assert store.accept_signed_certificate(leaf.pem, trusted_roots=[tmp_path / "missing.pem", ca_file])[0]
    assert store.client_certificate() is not None


def test_client_certificate_survives_a_new_store_over_the_same_directory(store, pki, clock):
    store.install(CENTRAL_SYSTEM_ROOT, pki["cs_root"].pem)
    store.accept_signed_certificate(sign(request(store), pki["cs_root"]).pem, [])
    in_use = store.client_certificate()
    assert in_use is not None
    again = CertificateStore(store.directory, max_certificates=3, max_chain_size=MAX_CHAIN_BYTES, now=clock)
    assert again.client_certificate() == in_use


def _wrong_key(store, pki):
    request(store)
    return make_certificate("CP-1", issuer=pki["cs_root"], ca=False).pem, "not for the key of the last certificate signing request"


def _unknown_issuer(store, pki):
    return sign(request(store), pki["foreign"]).pem, "not signed by a trusted certificate"


def _expired(store, pki):
    leaf = sign(request(store), pki["cs_root"], not_before=NOW - 2 * YEAR, not_after=NOW - YEAR)
    return leaf.pem, "expired on"


def _too_long(store, pki):
    leaf = sign(request(store), pki["cs_root"])
    padding_text = "\n" * (MAX_CHAIN_BYTES - len(leaf.pem) + 1)
    return leaf.pem + padding_text, "more than CertificateSignedMaxChainSize (10000)"


def _sub_ca_not_sent(store, pki):
    return sign(request(store), pki["cs_sub"]).pem, "not signed by a trusted certificate"


def _sub_ca_not_a_ca(store, pki):
    not_ca = make_certificate("CSMS Sub not CA", issuer=pki["cs_root"], ca=False)
    return chain_pem(sign(request(store), not_ca), not_ca), "is not a CA certificate"


def _garbage(store, pki):
    request(store)
    return "certificate please", "not a PEM-encoded X.509 certificate"


@pytest.mark.parametrize("make", [_wrong_key, _unknown_issuer, _expired, _too_long, _sub_ca_not_sent,
                                  _sub_ca_not_a_ca, _garbage])
def test_tc_077_invalid_charge_point_certificate_is_rejected_and_changes_nothing(store, pki, make):
    store.install(CENTRAL_SYSTEM_ROOT, pki["cs_root"].pem)
    chain, why = make(store, pki)
    files_before = sorted(p.name for p in store.directory.iterdir())
    accepted, reason = store.accept_signed_certificate(chain, trusted_roots=[])
    assert not accepted
    assert why in reason
    assert sorted(p.name for p in store.directory.iterdir()) == files_before
    assert store.client_certificate() is None


def test_rejected_certificate_leaves_the_request_open_for_the_right_one(store, pki):
    store.install(CENTRAL_SYSTEM_ROOT, pki["cs_root"].pem)
    csr = request(store)
    assert not store.accept_signed_certificate(sign(csr, pki["foreign"]).pem, [])[0]
    assert store.accept_signed_certificate(sign(csr, pki["cs_root"]).pem, [])[0]


def test_certificate_from_an_expired_root_is_rejected(store, pki, tmp_path):
    ca_file = tmp_path / "old-ca.pem"
    ca_file.write_text(pki["expired"].pem)
    leaf = sign(request(store), pki["expired"])
    accepted, reason = store.accept_signed_certificate(leaf.pem, trusted_roots=[ca_file])
    assert not accepted
    assert "Expired CA" in reason and "expired on" in reason


def test_certificate_without_any_trust_anchor_is_rejected(store, pki):
    accepted, reason = store.accept_signed_certificate(sign(request(store), pki["cs_root"]).pem, [])
    assert not accepted
    assert "no CentralSystemRootCertificate is installed" in reason


def test_signed_certificate_not_yet_valid_is_used_from_its_not_valid_before(store, pki, clock):
    store.install(CENTRAL_SYSTEM_ROOT, pki["cs_root"].pem)
    store.accept_signed_certificate(sign(request(store), pki["cs_root"]).pem, [])
    current = store.client_certificate()
    renewed = sign(request(store), pki["cs_root"], not_before=NOW + DAY, not_after=NOW + YEAR)
    accepted, why = store.accept_signed_certificate(renewed.pem, [])
    assert accepted and "in use from 2025-06-02T12:00:00Z" in why
    assert store.client_certificate() == current
    clock.moment = NOW + DAY
    chain_file, key_file = store.client_certificate()
    assert x509.load_pem_x509_certificates(chain_file.read_bytes()) == [renewed.certificate]
    # The superseded certificate and its key are gone.
    assert not current[0].exists() and not current[1].exists()


def test_deleting_the_charge_point_certificate_fails(store, pki):
    store.install(CENTRAL_SYSTEM_ROOT, pki["cs_root"].pem)
    leaf = sign(request(store), pki["cs_root"])
    store.accept_signed_certificate(leaf.pem, [])
    assert store.delete(ocsp_cert_id(leaf.certificate, pki["cs_root"].certificate)) == "Failed"
    assert store.client_certificate() is not None


# --- secure firmware update (TC_080, TC_081) ---------------------------------------------------


@pytest.fixture
def firmware(tmp_path):
    path = tmp_path / "firmware.bin"
    path.write_bytes(b"\x7fELF firmware image " * 5000)
    return path


def rsa_signature(key, data: bytes, scheme=None) -> str:
    scheme = scheme or padding.PKCS1v15()
    return base64.b64encode(key.sign(data, scheme, hashes.SHA256())).decode()


def ec_signature(key, data: bytes) -> str:
    return base64.b64encode(key.sign(data, ec.ECDSA(hashes.SHA256()))).decode()


@pytest.fixture
def manufacturer_store(store, pki):
    store.install(MANUFACTURER_ROOT, pki["mf_root"].pem)
    return store


def test_tc_080_rsa_signed_firmware_is_verified(manufacturer_store, pki, firmware):
    signer = pki["mf_signer_rsa"]
    assert manufacturer_store.check_signing_certificate(signer.pem) is None
    signature = rsa_signature(signer.key, firmware.read_bytes())
    assert manufacturer_store.verify_firmware_signature(firmware, signature, signer.pem) is None


def test_tc_080_rsa_pss_signed_firmware_is_verified(manufacturer_store, pki, firmware):
    signer = pki["mf_signer_rsa"]
    pss = padding.PSS(padding.MGF1(hashes.SHA256()), padding.PSS.DIGEST_LENGTH)
    signature = rsa_signature(signer.key, firmware.read_bytes(), pss)
    assert manufacturer_store.verify_firmware_signature(firmware, signature, signer.pem) is None


def test_tc_080_ec_signed_firmware_is_verified(manufacturer_store, pki, firmware):
    signer = pki["mf_signer_ec"]
    # A signature spread over lines, as base64 tools write it, is the same signature.
    signature = ec_signature(signer.key, firmware.read_bytes())
    wrapped = "\n".join(signature[i:i + 64] for i in range(0, len(signature), 64))
    assert manufacturer_store.verify_firmware_signature(firmware, wrapped, signer.pem) is None


def test_signing_certificate_as_hexadecimal_der_is_understood(manufacturer_store, pki, firmware):
    signer = pki["mf_signer_ec"]
    hex_der = signer.certificate.public_bytes(serialization.Encoding.DER).hex().upper()
    assert manufacturer_store.check_signing_certificate(hex_der) is None
    signature = ec_signature(signer.key, firmware.read_bytes())
    assert manufacturer_store.verify_firmware_signature(firmware, signature, hex_der) is None


def test_tc_081_tampered_firmware_fails_verification(manufacturer_store, pki, firmware):
    signer = pki["mf_signer_rsa"]
    signature = rsa_signature(signer.key, firmware.read_bytes())
    firmware.write_bytes(firmware.read_bytes() + b"\x00")
    assert "does not match" in manufacturer_store.verify_firmware_signature(firmware, signature, signer.pem)


def test_tc_081_signature_by_another_key_fails_verification(manufacturer_store, pki, firmware):
    signature = ec_signature(_ec_key(), firmware.read_bytes())
    problem = manufacturer_store.verify_firmware_signature(firmware, signature, pki["mf_signer_ec"].pem)
    assert "does not match" in problem


def test_tc_081_signature_that_is_not_base64_fails_verification(manufacturer_store, pki, firmware):
    problem = manufacturer_store.verify_firmware_signature(firmware, "not*base64!", pki["mf_signer_ec"].pem)
    assert problem == "the firmware signature is not base64"


def test_signing_certificate_not_from_a_manufacturer_root_is_refused(manufacturer_store, pki, firmware):
    # Keyed by a root installed as CentralSystemRootCertificate: not trusted for firmware.
    manufacturer_store.install(CENTRAL_SYSTEM_ROOT, pki["cs_root"].pem)
    stranger = make_certificate("Firmware Signer", issuer=pki["cs_root"], ca=False)
    assert "not signed by a trusted certificate" in manufacturer_store.check_signing_certificate(stranger.pem)
    signature = ec_signature(stranger.key, firmware.read_bytes())
    assert "not signed by a trusted certificate" in manufacturer_store.verify_firmware_signature(
        firmware, signature, stranger.pem)


def test_expired_signing_certificate_is_refused(manufacturer_store, pki):
    old = make_certificate("Old Signer", issuer=pki["mf_root"], ca=False, not_before=NOW - 2 * YEAR, not_after=NOW - YEAR)
    assert "expired on" in manufacturer_store.check_signing_certificate(old.pem)


def test_signing_certificate_through_a_sub_ca_is_accepted(manufacturer_store, pki):
    sub = make_certificate("Manufacturer Sub CA", issuer=pki["mf_root"])
    signer = make_certificate("Firmware Signer", issuer=sub, ca=False)
    assert manufacturer_store.check_signing_certificate(chain_pem(signer, sub)) is None
    assert "not signed by a trusted certificate" in manufacturer_store.check_signing_certificate(signer.pem)


def test_signing_certificate_without_a_manufacturer_root_is_refused(store, pki):
    assert "no ManufacturerRootCertificate is installed" in store.check_signing_certificate(pki["mf_signer_ec"].pem)


def test_signing_certificate_that_is_no_certificate_is_refused(manufacturer_store):
    assert manufacturer_store.check_signing_certificate("nonsense").startswith("signing certificate:")


# --- hash data ---------------------------------------------------------------------------------


def test_hash_data_of_an_rsa_root_is_its_ocsp_cert_id_for_every_algorithm(pki):
    root = pki["mf_root"].certificate
    for name, algorithm in (("SHA256", hashes.SHA256()), ("SHA384", hashes.SHA384()), ("SHA512", hashes.SHA512())):
        assert certificate_hash_data(root, None, name) == ocsp_cert_id(root, root, algorithm)
