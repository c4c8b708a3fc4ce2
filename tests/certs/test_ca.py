"""The certificate authority: init, issue per kind, revoke, CRL, files and modes."""

from __future__ import annotations

import datetime as dt
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from authz import PrincipalKind, Scope, Window
from certs import (
    PERMISSION_EXTENSION_OID,
    CaError,
    CertificateAuthority,
    KeyAlgorithm,
    decode_permission,
    generate_key,
)

T0 = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)


@pytest.fixture
def ca(tmp_path: Path) -> CertificateAuthority:
    return CertificateAuthority.init(tmp_path / "ca", "Qingdao video CA", now=T0)


def issue(ca: CertificateAuthority, kind: PrincipalKind = PrincipalKind.USER, **kw: object):  # type: ignore[no-untyped-def]
    fields: dict[str, object] = {
        "kind": kind,
        "subject_id": "37020000002000000001",
        "department": "traffic",
        "level": 2,
        "scope": Scope(prefixes=("3702",)),
        "windows": (Window(6, 9),),
        "not_before": T0,
        "not_after": T0 + 30 * DAY,
    }
    fields.update(kw)
    return ca.issue(**fields)  # type: ignore[arg-type]


def test_init_creates_files_with_modes(ca: CertificateAuthority) -> None:
    d = ca.directory
    assert stat.S_IMODE((d / "ca-key.pem").stat().st_mode) == 0o600
    assert stat.S_IMODE(d.stat().st_mode) == 0o700
    cert = ca.certificate
    assert cert.subject == cert.issuer
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "Qingdao video CA"
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
    assert ca.algorithm is KeyAlgorithm.ECDSA_P256
    reopened = CertificateAuthority.open(d)
    assert reopened.certificate == cert


def test_init_refuses_existing_and_open_refuses_missing(
    ca: CertificateAuthority, tmp_path: Path
) -> None:
    with pytest.raises(CaError):
        CertificateAuthority.init(ca.directory, "again", now=T0)
    with pytest.raises(CaError):
        CertificateAuthority.open(tmp_path / "nowhere")


def test_sm2_is_reserved() -> None:
    with pytest.raises(CaError):
        generate_key(KeyAlgorithm.SM2)


@pytest.mark.parametrize("kind", list(PrincipalKind))
def test_issue_per_kind(ca: CertificateAuthority, kind: PrincipalKind) -> None:
    cert, key = issue(ca, kind)
    assert key is not None
    assert cert.public_key() == key.public_key()
    assert cert.issuer == ca.certificate.subject
    names = {a.oid: a.value for a in cert.subject}
    assert names[NameOID.COMMON_NAME] == "37020000002000000001"
    assert names[NameOID.ORGANIZATIONAL_UNIT_NAME] == kind.value
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.CLIENT_AUTH in eku
    assert (ExtendedKeyUsageOID.SERVER_AUTH in eku) is (kind is PrincipalKind.PLATFORM)
    ext = cert.extensions.get_extension_for_oid(PERMISSION_EXTENSION_OID)
    assert not ext.critical
    assert isinstance(ext.value, x509.UnrecognizedExtension)
    perm = decode_permission(ext.value.value)
    assert (perm.kind, perm.level, perm.department) == (kind, 2, "traffic")
    assert ca.find(cert.serial_number) == cert


def test_issue_with_given_public_key_and_sans(ca: CertificateAuthority) -> None:
    own = generate_key()
    cert, key = issue(
        ca,
        PrincipalKind.PLATFORM,
        public_key=own.public_key(),
        subject_alt_names=("platform.example", "10.0.0.1"),
    )
    assert key is None and cert.public_key() == own.public_key()
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["platform.example"]
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["10.0.0.1"]


def test_issue_refuses_bad_periods(ca: CertificateAuthority) -> None:
    with pytest.raises(CaError):
        issue(ca, not_after=T0)
    with pytest.raises(CaError):
        issue(ca, not_after=T0 + 4000 * DAY)
    with pytest.raises(CaError):
        issue(ca, not_after=dt.datetime(2025, 2, 1))  # naive


def test_revoke_and_crl(ca: CertificateAuthority) -> None:
    cert, _ = issue(ca)
    other, _ = issue(ca, subject_id="37020000002000000002")
    empty = ca.crl(T0)
    assert len(empty) == 0
    ca.revoke(cert.serial_number, x509.ReasonFlags.key_compromise, T0 + DAY)
    with pytest.raises(CaError):
        ca.revoke(cert.serial_number, now=T0 + DAY)
    with pytest.raises(CaError):
        ca.revoke(12345, now=T0)
    crl = ca.crl(T0 + DAY, next_update=DAY)
    assert crl.is_signature_valid(ca.certificate.public_key())  # type: ignore[arg-type]
    assert crl.issuer == ca.certificate.subject
    entry = crl.get_revoked_certificate_by_serial_number(cert.serial_number)
    assert entry is not None and entry.revocation_date_utc == T0 + DAY
    reason = entry.extensions.get_extension_for_class(x509.CRLReason).value.reason
    assert reason is x509.ReasonFlags.key_compromise
    assert crl.get_revoked_certificate_by_serial_number(other.serial_number) is None
    assert crl.next_update_utc == T0 + 2 * DAY
    numbers = [
        c.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number for c in (empty, crl)
    ]
    assert numbers == [1, 2]
    assert set(ca.revoked()) == {cert.serial_number}
    assert {c.serial_number for c in ca.issued()} == {cert.serial_number, other.serial_number}


def test_times_as_unix_floats(ca: CertificateAuthority) -> None:
    cert, _ = issue(ca, not_before=T0.timestamp(), not_after=(T0 + DAY).timestamp())
    assert cert.not_valid_after_utc == T0 + DAY
