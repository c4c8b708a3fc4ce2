"""The platform's certificate authority (第十九、二十条).

Issues the permission-level certificates users, lower platforms and devices present, revokes
them, and signs CRLs. State lives in one directory, all PEM or JSON::

    ca-key.pem          the CA's private key (mode 0600)
    ca-cert.pem         the self-signed CA certificate
    issued/<SERIAL>.pem every issued certificate (serial in upper-case hex)
    revoked.json        {serial hex: {"time": ISO 8601, "reason": ReasonFlags name}}
    state.json          {"algorithm": ..., "crl_number": n}

Keys: ECDSA over P-256 with SHA-256 today. :class:`KeyAlgorithm` is the seam for SM2/SM3
(GB/T 32918, GM/T 0015 certificates) once the ``cryptography`` backend supports them;
``KeyAlgorithm.SM2`` is declared and refused with :class:`CaError` until then.

Not thread-safe and not multi-process-safe: one operator command at a time.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
from collections.abc import Sequence
from enum import Enum
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from authz import PrincipalKind, Scope, Window
from certs.errors import CaError
from certs.extension import PERMISSION_EXTENSION_OID, PermissionExtension, encode_permission

__all__ = [
    "CaPrivateKey",
    "CaPublicKey",
    "CertificateAuthority",
    "KeyAlgorithm",
    "as_datetime",
    "generate_key",
    "write_private_key",
]

CaPrivateKey = ec.EllipticCurvePrivateKey
CaPublicKey = ec.EllipticCurvePublicKey

_KEY_FILE = "ca-key.pem"
_CERT_FILE = "ca-cert.pem"
_ISSUED_DIR = "issued"
_REVOKED_FILE = "revoked.json"
_STATE_FILE = "state.json"

#: Leaf certificates backdate notBefore by this much to tolerate clock skew when not given.
_CLOCK_SKEW = dt.timedelta(minutes=5)


class KeyAlgorithm(Enum):
    ECDSA_P256 = "ecdsa-p256"
    SM2 = "sm2"  # reserved: SM2 with SM3, not yet supported by the crypto backend


def generate_key(algorithm: KeyAlgorithm = KeyAlgorithm.ECDSA_P256) -> CaPrivateKey:
    """A fresh private key.

    :raises CaError: the algorithm is not supported yet.
    """
    if algorithm is KeyAlgorithm.ECDSA_P256:
        return ec.generate_private_key(ec.SECP256R1())
    raise CaError(f"key algorithm {algorithm.value} is not supported yet")


def _signature_hash(algorithm: KeyAlgorithm) -> hashes.SHA256:
    if algorithm is KeyAlgorithm.ECDSA_P256:
        return hashes.SHA256()
    raise CaError(f"key algorithm {algorithm.value} is not supported yet")


def as_datetime(now: dt.datetime | float | None) -> dt.datetime:
    """An aware UTC datetime from a datetime, a Unix time, or ``None`` (the current time)."""
    if now is None:
        return dt.datetime.now(dt.UTC)
    if isinstance(now, dt.datetime):
        if now.tzinfo is None:
            raise CaError("naive datetime: give an aware one (UTC)")
        return now.astimezone(dt.UTC)
    return dt.datetime.fromtimestamp(now, dt.UTC)


def write_private_key(path: Path, key: CaPrivateKey) -> None:
    """Write ``key`` as unencrypted PKCS#8 PEM, created with mode 0600 (fails if it exists)."""
    data = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _name(subject: str | x509.Name) -> x509.Name:
    if isinstance(subject, x509.Name):
        return subject
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])


_EKU = {
    PrincipalKind.USER: [ExtendedKeyUsageOID.CLIENT_AUTH],
    PrincipalKind.DEPARTMENT_CLIENT: [ExtendedKeyUsageOID.CLIENT_AUTH],
    PrincipalKind.DEVICE: [ExtendedKeyUsageOID.CLIENT_AUTH],
    PrincipalKind.PLATFORM: [ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH],
}


class CertificateAuthority:
    """A CA backed by a directory. Create one with :meth:`init`, reopen it with :meth:`open`."""

    def __init__(
        self,
        directory: Path,
        key: CaPrivateKey,
        certificate: x509.Certificate,
        algorithm: KeyAlgorithm,
    ) -> None:
        self._dir = directory
        self._key = key
        self._cert = certificate
        self._algorithm = algorithm

    @property
    def directory(self) -> Path:
        return self._dir

    @property
    def certificate(self) -> x509.Certificate:
        return self._cert

    @property
    def algorithm(self) -> KeyAlgorithm:
        return self._algorithm

    @classmethod
    def init(
        cls,
        directory: str | os.PathLike[str],
        subject: str | x509.Name,
        *,
        algorithm: KeyAlgorithm = KeyAlgorithm.ECDSA_P256,
        valid_days: int = 3650,
        now: dt.datetime | float | None = None,
    ) -> CertificateAuthority:
        """Create a CA key and self-signed certificate in ``directory`` (created 0700).

        :raises CaError: the directory already holds a CA, or the algorithm is unsupported.
        """
        path = Path(directory)
        if (path / _KEY_FILE).exists() or (path / _CERT_FILE).exists():
            raise CaError(f"{path} already holds a CA")
        start = as_datetime(now)
        key = generate_key(algorithm)
        name = _name(subject)
        ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start - _CLOCK_SKEW)
            .not_valid_after(start + dt.timedelta(days=valid_days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(ski, critical=False)
            .sign(key, _signature_hash(algorithm))
        )
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        (path / _ISSUED_DIR).mkdir(mode=0o700, exist_ok=True)
        write_private_key(path / _KEY_FILE, key)
        _write_atomic(path / _CERT_FILE, cert.public_bytes(serialization.Encoding.PEM))
        _write_atomic(path / _REVOKED_FILE, b"{}\n")
        state = {"algorithm": algorithm.value, "crl_number": 0}
        _write_atomic(path / _STATE_FILE, json.dumps(state).encode())
        return cls(path, key, cert, algorithm)

    @classmethod
    def open(cls, directory: str | os.PathLike[str]) -> CertificateAuthority:
        """Load an existing CA.

        :raises CaError: files missing or unreadable.
        """
        path = Path(directory)
        try:
            key = serialization.load_pem_private_key((path / _KEY_FILE).read_bytes(), None)
            cert = x509.load_pem_x509_certificate((path / _CERT_FILE).read_bytes())
            state = json.loads((path / _STATE_FILE).read_text())
            algorithm = KeyAlgorithm(state["algorithm"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise CaError(f"cannot open CA in {path}: {exc}") from None
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise CaError(f"unsupported CA key type in {path}")
        return cls(path, key, cert, algorithm)

    def issue(
        self,
        *,
        kind: PrincipalKind,
        subject_id: str,
        department: str,
        level: int,
        scope: Scope,
        windows: Sequence[Window] = (),
        roles: frozenset[str] = frozenset(),
        not_before: dt.datetime | float | None = None,
        not_after: dt.datetime | float,
        public_key: CaPublicKey | None = None,
        subject_alt_names: Sequence[str] = (),
    ) -> tuple[x509.Certificate, CaPrivateKey | None]:
        """Issue a permission certificate.

        Subject: CN = ``subject_id`` (the 20-digit GB/T 28181 ID), O = department, OU = kind.
        ``subject_alt_names`` become DNS names or IP addresses (for platforms serving TLS).

        :returns: the certificate and, when ``public_key`` is ``None``, the generated key.
        :raises CaError: bad validity period or unsupported key.
        :raises certs.MalformedExtension: the permission values exceed the extension's bounds.
        """
        start = as_datetime(not_before) if not_before is not None else as_datetime(None)
        end = as_datetime(not_after)
        if end <= start:
            raise CaError("not_after must be after not_before")
        if end > self._cert.not_valid_after_utc:
            raise CaError("certificate would outlive the CA certificate")
        key: CaPrivateKey | None = None
        if public_key is None:
            key = generate_key(self._algorithm)
            public_key = key.public_key()
        elif not isinstance(public_key, ec.EllipticCurvePublicKey):
            raise CaError("unsupported public key type")
        ext = PermissionExtension(
            kind=kind,
            level=level,
            department=department,
            scope=scope,
            windows=tuple(windows),
            roles=frozenset(roles),
        )
        der = encode_permission(ext)
        subject = x509.Name(
            [
                x509.NameAttribute(NameOID.COMMON_NAME, subject_id),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, department),
                x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, kind.value),
            ]
        )
        ca_ski = self._cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self._cert.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=True,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage(_EKU[kind]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski),
                critical=False,
            )
            .add_extension(
                x509.UnrecognizedExtension(PERMISSION_EXTENSION_OID, der), critical=False
            )
        )
        if subject_alt_names:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([_general_name(n) for n in subject_alt_names]),
                critical=False,
            )
        cert = builder.sign(self._key, _signature_hash(self._algorithm))
        pem = cert.public_bytes(serialization.Encoding.PEM)
        _write_atomic(self._dir / _ISSUED_DIR / f"{cert.serial_number:X}.pem", pem)
        return cert, key

    def find(self, serial: int) -> x509.Certificate:
        """An issued certificate by serial number.

        :raises CaError: this CA issued no such serial.
        """
        path = self._dir / _ISSUED_DIR / f"{serial:X}.pem"
        try:
            return x509.load_pem_x509_certificate(path.read_bytes())
        except (OSError, ValueError):
            raise CaError(f"no certificate with serial {serial:X} issued by this CA") from None

    def issued(self) -> list[x509.Certificate]:
        """Every certificate this CA issued, by serial."""
        paths = sorted((self._dir / _ISSUED_DIR).glob("*.pem"))
        return [x509.load_pem_x509_certificate(p.read_bytes()) for p in paths]

    def revoked(self) -> dict[int, tuple[dt.datetime, x509.ReasonFlags]]:
        """Serial -> (revocation time, reason)."""
        raw: dict[str, Any] = json.loads((self._dir / _REVOKED_FILE).read_text())
        return {
            int(serial, 16): (
                dt.datetime.fromisoformat(entry["time"]),
                x509.ReasonFlags[entry["reason"]],
            )
            for serial, entry in raw.items()
        }

    def revoke(
        self,
        serial: int,
        reason: x509.ReasonFlags = x509.ReasonFlags.unspecified,
        now: dt.datetime | float | None = None,
    ) -> None:
        """Put a serial on the revocation list (takes effect in the next :meth:`crl`).

        :raises CaError: unknown serial, or already revoked.
        """
        self.find(serial)
        path = self._dir / _REVOKED_FILE
        raw: dict[str, Any] = json.loads(path.read_text())
        key = f"{serial:X}"
        if key in raw:
            raise CaError(f"serial {key} is already revoked")
        raw[key] = {"time": as_datetime(now).isoformat(), "reason": reason.name}
        _write_atomic(path, json.dumps(raw, indent=1, sort_keys=True).encode())

    def crl(
        self,
        now: dt.datetime | float | None = None,
        *,
        next_update: dt.timedelta = dt.timedelta(days=7),
    ) -> x509.CertificateRevocationList:
        """Sign a CRL of every revoked serial, with an increasing CRL number (RFC 5280 §5.2.3)."""
        at = as_datetime(now)
        state_path = self._dir / _STATE_FILE
        state = json.loads(state_path.read_text())
        number = int(state.get("crl_number", 0)) + 1
        ca_ski = self._cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(self._cert.subject)
            .last_update(at)
            .next_update(at + next_update)
            .add_extension(x509.CRLNumber(number), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski),
                critical=False,
            )
        )
        for serial, (when, reason) in sorted(self.revoked().items()):
            entry = (
                x509.RevokedCertificateBuilder()
                .serial_number(serial)
                .revocation_date(when)
                .add_extension(x509.CRLReason(reason), critical=False)
                .build()
            )
            builder = builder.add_revoked_certificate(entry)
        crl = builder.sign(self._key, _signature_hash(self._algorithm))
        state["crl_number"] = number
        _write_atomic(state_path, json.dumps(state).encode())
        return crl


def _general_name(value: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(value))
    except ValueError:
        return x509.DNSName(value)
