"""The lab's certificate authority and the serving certificates of the masters.

Made once per lab in the state folder (like kubeadm's /etc/kubernetes/pki) and reused,
so re-provisioning changes nothing. The API server certificate carries the SANs kubeadm
gives it: the VIP (the control-plane endpoint), the node's address and name, and the
`kubernetes` service names. A certificate is issued again when what it would say changed
(the VIP or an address moved, another CA) or it nears its end: a reused certificate with
stale SANs would fail every client's hostname check.

Private keys are written with mode 0600 from their first byte (lab.state.atomic_write).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from lab.state import atomic_write
from lab.topology import Node, Topology

API_SERVICE_NAMES = ("kubernetes", "kubernetes.default", "kubernetes.default.svc",
                     "kubernetes.default.svc.cluster.local")
VALIDITY = dt.timedelta(days=365)
# A certificate with less than this left is issued again rather than reused.
RENEW_BEFORE = dt.timedelta(days=30)


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _load_or_make_ca(d: Path, lab: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key_p, crt_p = d / "ca.key", d / "ca.crt"
    if key_p.exists() and crt_p.exists():
        key = serialization.load_pem_private_key(key_p.read_bytes(), None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        return key, x509.load_pem_x509_certificate(crt_p.read_bytes())
    d.mkdir(mode=0o700, parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"halab-{lab} lab CA")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + VALIDITY * 10)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True,
                                         crl_sign=True, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False,
                                         decipher_only=False), critical=True)
            .sign(key, hashes.SHA256()))
    atomic_write(key_p, _pem_key(key))
    atomic_write(crt_p, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return key, cert


def _sans(dns: list[str], ips: list[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
    return names + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]


def _still_right(crt: bytes, ca: x509.Certificate, cn: str, dns: list[str],
                 ips: list[str]) -> bool:
    """Does the certificate on disk say what a new one would: the same CN and SANs, signed
    by this CA, valid for a while yet?"""
    try:
        cert = x509.load_pem_x509_certificate(crt)
        cert.verify_directly_issued_by(ca)
    except Exception:  # noqa: BLE001 - unreadable, or not this CA's: issued again
        return False
    try:
        have = set(cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)
    except x509.ExtensionNotFound:
        have = set()
    cns = [a.value for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    return (cns == [cn] and have == set(_sans(dns, ips))
            and cert.not_valid_after_utc - dt.datetime.now(dt.UTC) > RENEW_BEFORE)


def _issue(ca_key: ec.EllipticCurvePrivateKey, ca: x509.Certificate, cn: str,
           dns: list[str], ips: list[str],
           usage: x509.ObjectIdentifier = ExtendedKeyUsageOID.SERVER_AUTH) -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    sans = _sans(dns, ips)
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
               .issuer_name(ca.subject).public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + VALIDITY))
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    cert = (builder
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(ca_key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM), _pem_key(key)


class LabPki:
    """Certificates on disk in ``directory``; each is made once and then read back, as long
    as it still says what the topology asks."""

    def __init__(self, directory: Path, topo: Topology) -> None:
        self.dir, self.topo = directory, topo

    @property
    def ca_cert(self) -> Path:
        return self.dir / "ca.crt"

    def _pair(self, stem: str, cn: str, dns: list[str], ips: list[str],
              usage: x509.ObjectIdentifier = ExtendedKeyUsageOID.SERVER_AUTH,
              ) -> tuple[bytes, bytes]:
        crt, key = self.dir / f"{stem}.crt", self.dir / f"{stem}.key"
        ca_key, ca = _load_or_make_ca(self.dir, self.topo.name)
        if not (crt.exists() and key.exists()
                and _still_right(crt.read_bytes(), ca, cn, dns, ips)):
            c, k = _issue(ca_key, ca, cn, dns, ips, usage)
            atomic_write(key, k)  # the key first: a crash between leaves a pair re-issued
            atomic_write(crt, c, 0o644)
        return crt.read_bytes(), key.read_bytes()

    def ca(self) -> bytes:
        _load_or_make_ca(self.dir, self.topo.name)
        return self.ca_cert.read_bytes()

    def apiserver(self, node: Node) -> tuple[bytes, bytes]:
        return self._pair(f"{node.name}-apiserver", "kube-apiserver",
                          [node.name, *API_SERVICE_NAMES],
                          [str(self.topo.vip), str(node.address)])

    def ingress(self, node: Node) -> tuple[bytes, bytes]:
        return self._pair(f"{node.name}-ingress", f"ingress {node.name}",
                          [node.name], [str(self.topo.vip), str(node.address)])

    def client(self, user: str) -> tuple[Path, Path]:
        """A client certificate (clientAuth) for ``user``: what a kubeconfig's user carries.
        Returns the paths of the certificate and its key."""
        stem = f"client-{user}"
        self._pair(stem, user, [], [], ExtendedKeyUsageOID.CLIENT_AUTH)
        return self.dir / f"{stem}.crt", self.dir / f"{stem}.key"
