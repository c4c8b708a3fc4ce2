"""Operations behind ``gb28181 certs init-ca|issue|revoke|crl|show``.

Each function does one operator command and returns the text to print; argument parsing stays
in the CLI. Text syntax for the permission values:

* scope: comma-separated items; ``*`` is everything, ``3702*`` a prefix (region code or ID
  prefix), anything else an explicit channel ID. ``"3702*,37020000001320000001"``.
* windows: semicolon-separated windows of comma-separated ``key=value`` fields:
  ``months=6-9``, ``hours=08:00-18:00`` (minutes inclusive, wrapping), ``flag=wartime``.
  ``"months=6-9;months=12-2;flag=wartime"``. Empty: always.
* roles: comma-separated (``emergency-manager``, ``emergency``).
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from authz import PrincipalKind, Scope, Window
from certs.ca import CertificateAuthority, KeyAlgorithm, as_datetime, write_private_key
from certs.errors import CaError, MalformedExtension
from certs.extension import PERMISSION_EXTENSION_OID, decode_permission

__all__ = [
    "format_scope",
    "format_windows",
    "init_ca",
    "issue_to_files",
    "parse_scope",
    "parse_windows",
    "revoke_serial",
    "show_certificate",
    "write_crl",
]


def parse_scope(text: str) -> Scope:
    """:raises CaError: on an empty item."""
    prefixes: list[str] = []
    ids: set[str] = set()
    for raw in text.split(","):
        item = raw.strip()
        if not item:
            if text.strip():
                raise CaError(f"empty item in scope {text!r}")
            continue
        if item.endswith("*"):
            prefixes.append(item[:-1])
        else:
            ids.add(item)
    return Scope(prefixes=tuple(prefixes), channel_ids=frozenset(ids))


def format_scope(scope: Scope) -> str:
    return ",".join([*(p + "*" for p in scope.prefixes), *sorted(scope.channel_ids)])


def _parse_range(value: str) -> tuple[str, str]:
    first, sep, last = value.partition("-")
    if not sep:
        raise CaError(f"expected a range a-b, got {value!r}")
    return first.strip(), last.strip()


def _minute(text: str) -> int:
    hours, sep, minutes = text.partition(":")
    if not sep:
        raise CaError(f"expected HH:MM, got {text!r}")
    return int(hours) * 60 + int(minutes)


def parse_windows(text: str) -> tuple[Window, ...]:
    """:raises CaError: on unknown keys or bad values."""
    windows = []
    for chunk in text.split(";"):
        if not chunk.strip():
            continue
        fields: dict[str, object] = {}
        try:
            for item in chunk.split(","):
                key, sep, value = item.partition("=")
                key = key.strip()
                if not sep:
                    raise CaError(f"expected key=value, got {item!r}")
                if key == "months":
                    a, b = _parse_range(value)
                    fields["first_month"], fields["last_month"] = int(a), int(b)
                elif key == "hours":
                    a, b = _parse_range(value)
                    fields["first_minute"], fields["last_minute"] = _minute(a), _minute(b)
                elif key == "flag":
                    fields["flag"] = value.strip()
                else:
                    raise CaError(f"unknown window field {key!r}")
            windows.append(Window(**fields))  # type: ignore[arg-type]
        except ValueError as exc:  # int() and AuthzError
            raise CaError(f"bad window {chunk!r}: {exc}") from None
    return tuple(windows)


def format_windows(windows: tuple[Window, ...]) -> str:
    parts = []
    for w in windows:
        fields = []
        if (w.first_month, w.last_month) != (1, 12):
            fields.append(f"months={w.first_month}-{w.last_month}")
        if (w.first_minute, w.last_minute) != (0, 1439):
            a, b = divmod(w.first_minute, 60), divmod(w.last_minute, 60)
            fields.append(f"hours={a[0]:02d}:{a[1]:02d}-{b[0]:02d}:{b[1]:02d}")
        if w.flag:
            fields.append(f"flag={w.flag}")
        parts.append(",".join(fields) or "months=1-12")
    return ";".join(parts)


def init_ca(
    directory: str | os.PathLike[str],
    subject: str,
    *,
    algorithm: str = KeyAlgorithm.ECDSA_P256.value,
    valid_days: int = 3650,
) -> str:
    """``certs init-ca``. :raises CaError:"""
    try:
        alg = KeyAlgorithm(algorithm)
    except ValueError:
        raise CaError(f"unknown algorithm {algorithm!r}") from None
    ca = CertificateAuthority.init(directory, subject, algorithm=alg, valid_days=valid_days)
    return f"created CA in {ca.directory}\n" + show_certificate(ca.certificate)


def issue_to_files(
    directory: str | os.PathLike[str],
    *,
    kind: str,
    subject_id: str,
    department: str,
    level: int,
    scope: str = "*",
    windows: str = "",
    roles: str = "",
    valid_days: int = 365,
    out_dir: str | os.PathLike[str] = ".",
    subject_alt_names: tuple[str, ...] = (),
) -> str:
    """``certs issue``: writes ``<subject_id>.cert.pem`` and ``<subject_id>.key.pem`` (0600).

    :raises CaError: bad arguments, or the files exist.
    :raises certs.MalformedExtension: the permission values exceed the extension's bounds.
    """
    try:
        principal_kind = PrincipalKind(kind)
    except ValueError:
        raise CaError(f"unknown kind {kind!r}") from None
    out = Path(out_dir)
    cert_path, key_path = out / f"{subject_id}.cert.pem", out / f"{subject_id}.key.pem"
    if cert_path.exists() or key_path.exists():
        raise CaError(f"{cert_path} or {key_path} already exists")
    ca = CertificateAuthority.open(directory)
    now = as_datetime(None)
    cert, key = ca.issue(
        kind=principal_kind,
        subject_id=subject_id,
        department=department,
        level=level,
        scope=parse_scope(scope),
        windows=parse_windows(windows),
        roles=frozenset(r.strip() for r in roles.split(",") if r.strip()),
        not_before=now - dt.timedelta(minutes=5),
        not_after=now + dt.timedelta(days=valid_days),
        subject_alt_names=subject_alt_names,
    )
    assert key is not None
    out.mkdir(parents=True, exist_ok=True)
    write_private_key(key_path, key)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return f"wrote {cert_path} and {key_path}\n" + show_certificate(cert)


def revoke_serial(
    directory: str | os.PathLike[str], serial: str, reason: str = "unspecified"
) -> str:
    """``certs revoke``: ``serial`` in hex as shown by ``show``. :raises CaError:"""
    try:
        number = int(serial.replace(":", ""), 16)
        flag = x509.ReasonFlags[reason]
    except (ValueError, KeyError):
        raise CaError(f"bad serial {serial!r} or reason {reason!r}") from None
    ca = CertificateAuthority.open(directory)
    ca.revoke(number, flag)
    return f"revoked serial {number:X} ({flag.name}); publish a new CRL"


def write_crl(
    directory: str | os.PathLike[str], out: str | os.PathLike[str], *, valid_days: int = 7
) -> str:
    """``certs crl``: sign a CRL and write it as PEM to ``out``. :raises CaError:"""
    ca = CertificateAuthority.open(directory)
    crl = ca.crl(next_update=dt.timedelta(days=valid_days))
    Path(out).write_bytes(crl.public_bytes(serialization.Encoding.PEM))
    return f"wrote {out}: {len(crl)} revoked, next update {crl.next_update_utc}"


def show_certificate(cert: x509.Certificate | bytes | str | os.PathLike[str]) -> str:
    """``certs show``: a certificate object, PEM bytes, or a path to a PEM file."""
    if not isinstance(cert, x509.Certificate):
        if isinstance(cert, bytes):
            data = cert
        else:
            try:
                data = Path(cert).read_bytes()
            except OSError as exc:
                raise CaError(f"cannot read {cert}: {exc}") from None
        try:
            cert = x509.load_pem_x509_certificate(data)
        except ValueError as exc:
            raise CaError(f"not a PEM certificate: {exc}") from None
    lines = [
        f"subject:     {cert.subject.rfc4514_string()}",
        f"issuer:      {cert.issuer.rfc4514_string()}",
        f"serial:      {cert.serial_number:X}",
        f"valid:       {cert.not_valid_before_utc.isoformat()} .. "
        f"{cert.not_valid_after_utc.isoformat()}",
        f"sha256:      {cert.fingerprint(hashes.SHA256()).hex()}",
    ]
    try:
        raw = cert.extensions.get_extension_for_oid(PERMISSION_EXTENSION_OID).value
    except x509.ExtensionNotFound:
        lines.append("permission:  (none)")
        return "\n".join(lines) + "\n"
    try:
        assert isinstance(raw, x509.UnrecognizedExtension)
        perm = decode_permission(raw.value)
    except (AssertionError, MalformedExtension) as exc:
        lines.append(f"permission:  MALFORMED ({exc})")
        return "\n".join(lines) + "\n"
    lines += [
        f"kind:        {perm.kind.value}",
        f"level:       {perm.level}",
        f"department:  {perm.department}",
        f"scope:       {format_scope(perm.scope) or '(nothing)'}",
        f"windows:     {format_windows(perm.windows) or '(always)'}",
        f"roles:       {','.join(sorted(perm.roles)) or '(none)'}",
    ]
    return "\n".join(lines) + "\n"
