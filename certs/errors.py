"""Errors of the certs package: one base class, one class per way a certificate can fail."""

from __future__ import annotations

__all__ = [
    "CaError",
    "CertError",
    "CertVerifyError",
    "CertificateExpired",
    "CertificateNotYetValid",
    "CertificateOutsideValidity",
    "CertificateRevoked",
    "MalformedCertificate",
    "MalformedExtension",
    "MissingPermissionExtension",
    "RevocationUnknown",
    "UnknownIssuer",
    "WrongKeyUsage",
]


class CertError(Exception):
    """Base class of every error raised by :mod:`certs`."""


class MalformedExtension(CertError, ValueError):
    """The permission extension's DER is not valid (truncated, not minimal, out of range)."""


class CaError(CertError):
    """A certificate-authority operation failed (directory exists, unknown serial...)."""


class CertVerifyError(CertError):
    """A presented certificate is not acceptable. Subclasses say why."""


class MalformedCertificate(CertVerifyError):
    """Not a parsable certificate, or its permission extension is malformed."""


class UnknownIssuer(CertVerifyError):
    """Not signed by any trusted CA."""


class CertificateOutsideValidity(CertVerifyError):
    """``now`` lies outside the certificate's (or its CA's) validity period."""


class CertificateExpired(CertificateOutsideValidity):
    """``now`` is after notAfter."""


class CertificateNotYetValid(CertificateOutsideValidity):
    """``now`` is before notBefore."""


class CertificateRevoked(CertVerifyError):
    """A CRL from the issuing CA lists the certificate's serial number."""


class RevocationUnknown(CertVerifyError):
    """A current CRL was required but none from the issuing CA was given."""


class WrongKeyUsage(CertVerifyError):
    """Key usage, extended key usage or basic constraints do not allow this use."""


class MissingPermissionExtension(CertVerifyError):
    """The certificate carries no permission-level extension (第二十条)."""
