"""Certificates and keys for the local control plane (``controlplane.py``), made with ``cryptography``.

Where it stands in the flow: beside the fleet, in tests and the sandbox only. One private CA signs a
serving certificate for kube-apiserver (SANs ``localhost``, ``127.0.0.1``, the in-cluster ``kubernetes``
names and the Service IP) and one client certificate per identity: an admin (``O=system:masters``, for the
tests, kwok and the user's kubectl), and the controller-manager and scheduler under the user names the
bootstrap RBAC policy already binds (``system:kube-controller-manager``, ``system:kube-scheduler``), plus
the aggregator's proxy client and the metrics API's serving certificate (``metrics_api.py``). A separate
key pair signs and verifies ServiceAccount tokens. ECDSA P-256 throughout: fast to generate, and
accepted by every component. Keys are written 0600 and never printed.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALIDITY = datetime.timedelta(days=30)
#: Who each client certificate identifies: file stem -> (common name, organisation or None).
CLIENTS: dict[str, tuple[str, str | None]] = {
    "admin": ("gco-admin", "system:masters"),
    "controller-manager": ("system:kube-controller-manager", None),
    "scheduler": ("system:kube-scheduler", None),
    # kube-apiserver's client certificate towards aggregated API servers (--proxy-client-cert-file).
    "front-proxy": ("front-proxy-client", None),
}


@dataclass(frozen=True)
class Pki:
    """Paths of everything ``write_pki`` made."""

    directory: Path

    @property
    def ca_cert(self) -> Path:
        return self.directory / "ca.crt"

    @property
    def serving_cert(self) -> Path:
        return self.directory / "apiserver.crt"

    @property
    def serving_key(self) -> Path:
        return self.directory / "apiserver.key"

    @property
    def metrics_cert(self) -> Path:
        return self.directory / "metrics-api.crt"

    @property
    def metrics_key(self) -> Path:
        return self.directory / "metrics-api.key"

    @property
    def service_account_key(self) -> Path:
        return self.directory / "sa.key"

    @property
    def service_account_pub(self) -> Path:
        return self.directory / "sa.pub"

    def client_cert(self, who: str) -> Path:
        return self.directory / f"{who}.crt"

    def client_key(self, who: str) -> Path:
        return self.directory / f"{who}.key"


def write_pki(directory: Path, service_ip: str, metrics_name: str = "gco-metrics.kube-system.svc") -> Pki:
    """A fresh CA, serving certificates (kube-apiserver's; the metrics API's, for ``metrics_name``), client
    certificates and ServiceAccount key pair in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    pki = Pki(directory)
    ca_key = _new_key()
    ca_name = _name("gco-tasks local control plane CA")
    ca_cert = _builder(ca_name, ca_name, ca_key).add_extension(
        x509.BasicConstraints(ca=True, path_length=None), critical=True
    )
    ca_cert = ca_cert.add_extension(_key_usage(ca=True), critical=True)
    ca = ca_cert.sign(ca_key, hashes.SHA256())
    _write_cert(pki.ca_cert, ca)
    dns = ["localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"]
    dns.append("kubernetes.default.svc.cluster.local")
    ips = ("127.0.0.1", service_ip)
    _write_serving((pki.serving_cert, pki.serving_key), "kube-apiserver", ca, ca_key, dns, ips)
    metrics = (pki.metrics_cert, pki.metrics_key)
    _write_serving(metrics, "gco-metrics", ca, ca_key, [metrics_name, "localhost"], ("127.0.0.1",))
    for who, (common_name, organisation) in CLIENTS.items():
        _write_client(pki, who, ca, ca_key, common_name, organisation)
    sa_key = _new_key()
    _write_key(pki.service_account_key, sa_key)
    public = sa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    pki.service_account_pub.write_bytes(public)
    return pki


def _write_serving(
    paths: tuple[Path, Path],
    common_name: str,
    ca: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    dns: list[str],
    ips: tuple[str, ...],
) -> None:
    key = _new_key()
    names: list[x509.GeneralName] = [x509.DNSName(name) for name in dns]
    names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
    builder = _builder(_name(common_name), ca.subject, key)
    builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    builder = builder.add_extension(_key_usage(ca=False), critical=True)
    _write_cert(paths[0], builder.sign(ca_key, hashes.SHA256()))
    _write_key(paths[1], key)


def _write_client(
    pki: Pki,
    who: str,
    ca: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    common_name: str,
    organisation: str | None,
) -> None:
    key = _new_key()
    builder = _builder(_name(common_name, organisation), ca.subject, key)
    builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
    builder = builder.add_extension(_key_usage(ca=False), critical=True)
    _write_cert(pki.client_cert(who), builder.sign(ca_key, hashes.SHA256()))
    _write_key(pki.client_key(who), key)


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _name(common_name: str, organisation: str | None = None) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organisation:
        attributes.insert(0, x509.NameAttribute(NameOID.ORGANIZATION_NAME, organisation))
    return x509.Name(attributes)


def _builder(
    subject: x509.Name, issuer: x509.Name, key: ec.EllipticCurvePrivateKey
) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
    )


def _key_usage(ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=not ca,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    data = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    path.touch(mode=0o600)
    path.chmod(0o600)
    path.write_bytes(data)
