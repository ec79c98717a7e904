"""Certificates made at test time (with cryptography): a private CA, server and client
certificates it issues (valid or expired), and the server TLS context of an upstream that
requires a client certificate."""
from __future__ import annotations

import datetime
import ipaddress
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class Issued:
    cert: Path
    key: Path

    def key_body(self) -> str:
        """The key's base64 lines: what must never appear anywhere."""
        return "".join(line for line in self.key.read_text().splitlines() if not line.startswith("-----"))


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))


class PrivateCA:
    def __init__(self, directory: Path, name: str):
        self.directory, self.name = directory, name
        self._key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        self._certificate = (x509.CertificateBuilder().subject_name(_name(name)).issuer_name(_name(name))
                             .public_key(self._key.public_key()).serial_number(x509.random_serial_number())
                             .not_valid_before(now - datetime.timedelta(days=1))
                             .not_valid_after(now + datetime.timedelta(days=30))
                             .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                             .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                                          key_encipherment=False, data_encipherment=False,
                                                          key_agreement=False, key_cert_sign=True, crl_sign=True,
                                                          encipher_only=False, decipher_only=False), critical=True)
                             .add_extension(x509.SubjectKeyIdentifier.from_public_key(self._key.public_key()),
                                            critical=False)
                             .sign(self._key, hashes.SHA256()))
        self.path = directory / f"{name}-ca.pem"
        self.path.write_bytes(self._certificate.public_bytes(serialization.Encoding.PEM))

    def issue(self, name: str, *, client: bool = False, expired: bool = False) -> Issued:
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        start, end = (now - datetime.timedelta(days=10), now - datetime.timedelta(days=1)) if expired else \
            (now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=1))
        usage = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
        builder = (x509.CertificateBuilder().subject_name(_name(name)).issuer_name(self._certificate.subject)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(start).not_valid_after(end)
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                   .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
                   .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()),
                                  critical=False))
        if not client:
            builder = builder.add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]), critical=False)
        certificate = builder.sign(self._key, hashes.SHA256())
        issued = Issued(self.directory / f"{name}.pem", self.directory / f"{name}-key.pem")
        issued.cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        _write_key(key, issued.key)
        return issued


def server_context(server: Issued, client_ca: PrivateCA | None = None) -> ssl.SSLContext:
    """A server context presenting `server`; with `client_ca`, a client certificate it issued is required."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(server.cert, server.key)
    if client_ca is not None:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(client_ca.path)
    return context
