"""The device's identity: an EC P-256 key, a CSR for the county CA, or the
certificate, key and CA the county hands over; and the checks that catch a
wrong file before it is installed.

The private key lives only in memory and in the owner-only key file: it is
never printed, logged or put in the report (which carries the certificate's
fingerprint instead).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from shaobing.agent.tls import EXPIRY_WARNING_DAYS


class IdentityError(ValueError):
    """A file given for the identity cannot be used; the message names it."""


@dataclass
class Identity:
    key: ec.EllipticCurvePrivateKey
    key_source: str  # "generated", "kept" (already on the box) or a file the county gave
    cert: x509.Certificate | None = None
    ca_pem: bytes | None = None
    csr: x509.CertificateSigningRequest | None = None
    warnings: list[str] = field(default_factory=list)

    def key_pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def cert_pem(self) -> bytes | None:
        return self.cert.public_bytes(serialization.Encoding.PEM) if self.cert else None

    def csr_pem(self) -> bytes | None:
        return self.csr.public_bytes(serialization.Encoding.PEM) if self.csr else None

    def fingerprint(self) -> str | None:
        return fingerprint(self.cert) if self.cert else None

    def summary(self) -> dict:
        out: dict = {"key": self.key_source, "key_type": "EC P-256"}
        if self.cert is not None:
            out.update(
                subject=self.cert.subject.rfc4514_string(),
                issuer=self.cert.issuer.rfc4514_string(),
                not_after=self.cert.not_valid_after_utc.isoformat(),
                fingerprint_sha256=self.fingerprint(),
            )
        if self.csr is not None:
            out["csr"] = True
        return out

    def __repr__(self) -> str:  # a stray print or log of the object shows no key
        return f"Identity(key_source={self.key_source!r}, cert={self.fingerprint()!r})"


def fingerprint(cert: x509.Certificate) -> str:
    return cert.fingerprint(hashes.SHA256()).hex(":").upper()


def generate_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def make_csr(
    key: ec.EllipticCurvePrivateKey, device_id: str, village_code: str, village_name: str
) -> x509.CertificateSigningRequest:
    # CN = device id: brokers with use_identity_as_username map it to the MQTT user.
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "CN"),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, village_code),
            x509.NameAttribute(NameOID.LOCALITY_NAME, village_name),
            x509.NameAttribute(NameOID.COMMON_NAME, device_id),
        ]
    )
    return (
        x509.CertificateSigningRequestBuilder()
        .subject_name(subject)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )


def load_key(path: Path, what: str = "key") -> ec.EllipticCurvePrivateKey:
    data = _read(path, what)
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError as exc:
        raise IdentityError(
            f"{what}: {path} is encrypted with a passphrase; the agent needs an unencrypted key"
        ) from exc
    except ValueError as exc:
        raise IdentityError(f"{what}: {path} is not a PEM private key") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        # RSA keys work with the broker too, but the county profile is P-256.
        raise IdentityError(f"{what}: {path} is not an EC key (expected EC P-256)")
    return key


def load_cert(path: Path, what: str = "cert") -> x509.Certificate:
    data = _read(path, what)
    try:
        return x509.load_pem_x509_certificate(data)
    except ValueError as exc:
        raise IdentityError(f"{what}: {path} is not a PEM certificate") from exc


def load_ca(path: Path, what: str = "ca") -> bytes:
    data = _read(path, what)
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        raise IdentityError(f"{what}: {path} is not a PEM CA certificate") from exc
    if not certs:
        raise IdentityError(f"{what}: {path} holds no certificate")
    return data


def _read(path: Path, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError as exc:
        raise IdentityError(f"{what}: file {path} does not exist") from exc
    except OSError as exc:
        raise IdentityError(f"{what}: cannot read {path}: {exc.strerror}") from exc


def check_pair(cert: x509.Certificate, key: ec.EllipticCurvePrivateKey, cert_path, key_desc):
    if cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ) != key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ):
        raise IdentityError(
            f"cert: {cert_path} does not match the private key {key_desc} "
            "(it was issued for another key: ask the county for the certificate of this "
            "device's CSR, or give the key that belongs to it)"
        )


def check_validity(cert: x509.Certificate, cert_path, now: dt.datetime | None = None) -> list[str]:
    """Raises for an expired or not-yet-valid certificate; returns warnings."""
    now = now or dt.datetime.now(dt.UTC)
    after, before = cert.not_valid_after_utc, cert.not_valid_before_utc
    if after < now:
        raise IdentityError(f"cert: {cert_path} expired on {after:%Y-%m-%d} (UTC)")
    if before > now:
        raise IdentityError(
            f"cert: {cert_path} is valid only from {before:%Y-%m-%d %H:%M} UTC; "
            f"this box's clock says {now:%Y-%m-%d %H:%M} UTC (set the clock or wait)"
        )
    left = after - now
    if left < dt.timedelta(days=EXPIRY_WARNING_DAYS):
        return [f"cert: {cert_path} expires in {left.days} day(s), on {after:%Y-%m-%d}"]
    return []


def check_issuer(cert: x509.Certificate, ca_pem: bytes, cert_path, ca_path) -> list[str]:
    """Warning only: a county may sign devices with a CA other than the broker's."""
    for ca in x509.load_pem_x509_certificates(ca_pem):
        try:
            cert.verify_directly_issued_by(ca)
            return []
        except (ValueError, TypeError, InvalidSignature):
            continue
    return [
        f"cert: {cert_path} is not signed by the CA in {ca_path}; the broker must trust "
        "its issuer or it will refuse the connection"
    ]


def build_identity(
    *,
    device_id: str,
    village_code: str,
    village_name: str,
    existing_key: Path | None,
    key: Path | None = None,
    cert: Path | None = None,
    ca: Path | None = None,
    new_key: bool = False,
    now: dt.datetime | None = None,
) -> Identity:
    """Everything checked before anything is written.

    Key: the county's file if given, else the key already on the box (so a CSR
    in flight stays valid), else a new one. A CSR is made whenever there is no
    certificate yet.
    """
    if key is not None:
        ident = Identity(load_key(key, "key"), str(key))
        key_desc = str(key)
    elif existing_key is not None and existing_key.exists() and not new_key:
        ident = Identity(load_key(existing_key, "key on this box"), "kept")
        key_desc = f"already on this box ({existing_key})"
    else:
        ident = Identity(generate_key(), "generated")
        key_desc = "generated now"
    if ca is not None:
        ident.ca_pem = load_ca(ca)
    if cert is not None:
        certificate = load_cert(cert)
        check_pair(certificate, ident.key, cert, key_desc)
        ident.warnings += check_validity(certificate, cert, now)
        if ident.ca_pem is not None:
            ident.warnings += check_issuer(certificate, ident.ca_pem, cert, ca)
        ident.cert = certificate
    else:
        ident.csr = make_csr(ident.key, device_id, village_code, village_name)
    return ident
