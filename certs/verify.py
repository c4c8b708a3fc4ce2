"""Verification of a presented permission certificate (第十九、二十条).

Accepts a leaf certificate issued directly by one of the trusted CAs (the platform's CA
issues every certificate itself; intermediate CAs are not supported). Checks, in order:
parse, issuer and signature, validity of the CA and the leaf at ``now`` (RFC 5280 §4.1.2.5,
bounds inclusive), revocation by the issuer's CRLs, basic constraints / key usage / extended key
usage, then the permission extension. Each failure is a typed
:class:`certs.errors.CertVerifyError`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from authz import Principal, PrincipalKind, Scope, Window
from certs.ca import as_datetime
from certs.errors import (
    CertificateExpired,
    CertificateNotYetValid,
    CertificateRevoked,
    MalformedCertificate,
    MalformedExtension,
    MissingPermissionExtension,
    RevocationUnknown,
    UnknownIssuer,
    WrongKeyUsage,
)
from certs.extension import PERMISSION_EXTENSION_OID, PermissionExtension, decode_permission

__all__ = ["MAX_CERTIFICATE_SIZE", "Identity", "verify_certificate"]

#: PEM or DER input larger than this is refused before parsing.
MAX_CERTIFICATE_SIZE = 256 * 1024


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a verified certificate names and what it permits. Build an
    :class:`authz.Principal` with :meth:`to_principal`."""

    subject_id: str
    kind: PrincipalKind
    department: str
    level: int
    scope: Scope
    windows: tuple[Window, ...]
    roles: frozenset[str]
    serial: int
    issuer: str
    not_before: float
    not_after: float
    fingerprint_sha256: str

    @property
    def permission(self) -> PermissionExtension:
        return PermissionExtension(
            self.kind, self.level, self.department, self.scope, self.windows, self.roles
        )

    def to_principal(self, *, emergency: bool = False) -> Principal:
        # notAfter is inclusive in X.509; Principal.valid_to is exclusive.
        return self.permission.to_principal(
            self.subject_id, self.not_before, self.not_after + 1.0, emergency=emergency
        )


def _load(cert: bytes | str | x509.Certificate) -> x509.Certificate:
    if isinstance(cert, x509.Certificate):
        return cert
    data = cert.encode("ascii", errors="replace") if isinstance(cert, str) else bytes(cert)
    if len(data) > MAX_CERTIFICATE_SIZE:
        raise MalformedCertificate("certificate too large")
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            return x509.load_pem_x509_certificate(data)
        return x509.load_der_x509_certificate(data)
    except ValueError as exc:
        raise MalformedCertificate(f"not a certificate: {exc}") from None


def _find_issuer(cert: x509.Certificate, trust: Sequence[x509.Certificate]) -> x509.Certificate:
    for ca in trust:
        if ca.subject != cert.issuer:
            continue
        try:
            cert.verify_directly_issued_by(ca)
        except (ValueError, TypeError, InvalidSignature):
            continue
        return ca
    raise UnknownIssuer(f"not issued by a trusted CA (issuer {cert.issuer.rfc4514_string()})")


def _check_validity(cert: x509.Certificate, now: dt.datetime, what: str) -> None:
    if now < cert.not_valid_before_utc:
        raise CertificateNotYetValid(f"{what} not valid before {cert.not_valid_before_utc}")
    if now > cert.not_valid_after_utc:
        raise CertificateExpired(f"{what} expired at {cert.not_valid_after_utc}")


def _check_revocation(
    cert: x509.Certificate,
    ca: x509.Certificate,
    crls: Sequence[x509.CertificateRevocationList],
    now: dt.datetime,
    require_crl: bool,
) -> None:
    current = False
    for crl in crls:
        if crl.issuer != ca.subject or not crl.is_signature_valid(ca.public_key()):  # type: ignore[arg-type]
            continue  # a CRL we cannot trust neither revokes nor vouches
        entry = crl.get_revoked_certificate_by_serial_number(cert.serial_number)
        if entry is not None:
            raise CertificateRevoked(
                f"serial {cert.serial_number:X} revoked at {entry.revocation_date_utc}"
            )
        next_update = crl.next_update_utc
        if crl.last_update_utc <= now and (next_update is None or now <= next_update):
            current = True
    if require_crl and not current:
        raise RevocationUnknown("no current CRL from the issuing CA")


def _check_usage(cert: x509.Certificate, purpose: x509.ObjectIdentifier) -> None:
    try:
        exts = cert.extensions
        bc = exts.get_extension_for_class(x509.BasicConstraints).value
        ku = exts.get_extension_for_class(x509.KeyUsage).value
        eku = exts.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound as exc:
        raise WrongKeyUsage(f"missing extension: {exc.oid.dotted_string}") from None
    if bc.ca:
        raise WrongKeyUsage("a CA certificate cannot authenticate a principal")
    if not ku.digital_signature:
        raise WrongKeyUsage("key usage lacks digitalSignature")
    if purpose not in eku:
        raise WrongKeyUsage(f"extended key usage lacks {purpose.dotted_string}")


def verify_certificate(
    cert: bytes | str | x509.Certificate,
    trust: Sequence[x509.Certificate],
    crls: Sequence[x509.CertificateRevocationList] = (),
    now: dt.datetime | float | None = None,
    *,
    require_crl: bool = False,
    purpose: x509.ObjectIdentifier = ExtendedKeyUsageOID.CLIENT_AUTH,
) -> Identity:
    """Verify a presented certificate (PEM, DER or parsed) and return its identity.

    :param trust: the trusted CA certificates.
    :param crls: CRLs; only those signed by the issuing CA count.
    :param now: aware datetime or Unix time; ``None`` reads the clock (CLI use only).
    :param require_crl: refuse unless a current CRL of the issuer is among ``crls``.
    :raises MalformedCertificate: unparsable certificate or malformed permission extension.
    :raises UnknownIssuer: no trusted CA signed it.
    :raises CertificateExpired, CertificateNotYetValid: outside its or its CA's validity.
    :raises CertificateRevoked: listed by the issuer's CRL.
    :raises RevocationUnknown: ``require_crl`` and no current CRL.
    :raises WrongKeyUsage: not an end-entity certificate for ``purpose``.
    :raises MissingPermissionExtension: no permission extension.
    """
    at = as_datetime(now)
    parsed = _load(cert)
    try:
        parsed.extensions  # noqa: B018 - parse them now, fail as malformed
        cn = parsed.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    except ValueError as exc:
        raise MalformedCertificate(f"malformed certificate: {exc}") from None
    ca = _find_issuer(parsed, trust)
    _check_validity(ca, at, "issuing CA")
    _check_validity(parsed, at, "certificate")
    _check_revocation(parsed, ca, crls, at, require_crl)
    _check_usage(parsed, purpose)
    try:
        ext = parsed.extensions.get_extension_for_oid(PERMISSION_EXTENSION_OID)
    except x509.ExtensionNotFound:
        raise MissingPermissionExtension("no permission-level extension") from None
    value = ext.value
    if not isinstance(value, x509.UnrecognizedExtension):
        raise MalformedCertificate("permission extension has an unexpected type")
    try:
        permission = decode_permission(value.value)
    except MalformedExtension as exc:
        raise MalformedCertificate(f"malformed permission extension: {exc}") from exc
    if len(cn) != 1 or not isinstance(cn[0].value, str) or not cn[0].value:
        raise MalformedCertificate("subject needs exactly one common name (the ID)")
    return Identity(
        subject_id=cn[0].value,
        kind=permission.kind,
        department=permission.department,
        level=permission.level,
        scope=permission.scope,
        windows=permission.windows,
        roles=permission.roles,
        serial=parsed.serial_number,
        issuer=parsed.issuer.rfc4514_string(),
        not_before=parsed.not_valid_before_utc.timestamp(),
        not_after=parsed.not_valid_after_utc.timestamp(),
        fingerprint_sha256=parsed.fingerprint(hashes.SHA256()).hex(),
    )
