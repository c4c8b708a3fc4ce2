"""Command line: ``gb28181 serve``, ``gb28181 check-config``, ``gb28181 --version``,
``gb28181 certs init-ca|issue|revoke|bind|token|crl|show``, ``gb28181 audit verify|export`` and
``gb28181 admin create``.

Exit codes: 0 success, 2 bad usage or configuration (the message names the
offending key), 1 anything else.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import __version__
from .config import Config, ConfigError, load_config

if TYPE_CHECKING:
    from .store import Store

__all__ = ["AdminError", "create_admin", "main"]

EXIT_CONFIG = 2


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )


def _load(path: str | None) -> Config:
    try:
        return load_config(path)
    except ConfigError as exc:
        print(f"gb28181: configuration error: {exc}", file=sys.stderr)
        raise SystemExit(EXIT_CONFIG) from None


def _cmd_serve(args: argparse.Namespace) -> int:
    config = _load(args.config)
    _setup_logging(config.log.level)
    from .server import run

    try:
        run(config)
    except OSError as exc:
        print(f"gb28181: cannot start: {exc}", file=sys.stderr)
        return 1
    return 0


def _cmd_check_config(args: argparse.Namespace) -> int:
    config = _load(args.config)
    print(f"configuration OK: SIP {config.sip.id}@{config.sip.domain} on port {config.sip.port}")
    return 0


# -- certs ------------------------------------------------------------------------------------

DEFAULT_CA_DIR = "./var/ca"


def _ca_dir(args: argparse.Namespace) -> str:
    """``--ca-dir``, else ``[certs] ca_dir`` of the configuration, else ``./var/ca``."""
    if args.ca_dir:
        return str(args.ca_dir)
    if args.config:
        certs_section = getattr(_load(args.config), "certs", None)
        configured = getattr(certs_section, "ca_dir", "")
        if configured:
            return str(configured)
    return DEFAULT_CA_DIR


#: ``(action, target, extra)`` of the audit record an operator command leaves.
_Event = tuple[str, str, dict[str, Any]]


def _certs_op(
    operation: Callable[[], str],
    args: argparse.Namespace | None = None,
    event: Callable[[], _Event] | None = None,
) -> int:
    """Run a certs operation and print its text; with ``--config`` or ``--store-url``, leave
    an audit record of it (certificate issue and revocation belong in the trail, art. 21)."""
    from certs import CertError

    try:
        text = operation()
    except (CertError, ValueError) as exc:
        print(f"gb28181: certs: {exc}", file=sys.stderr)
        return 1
    print(text, end="" if text.endswith("\n") else "\n")
    if args is not None and event is not None and (args.config or args.store_url):
        return _audit_cli_event(args, event())
    return 0


def _audit_cli_event(args: argparse.Namespace, event: _Event) -> int:
    import asyncio

    from .store import StoreError

    url, key = _audit_settings(args)
    try:
        asyncio.run(_record_cli_events(url, key, [event]))
    except (StoreError, OSError) as exc:
        print(f"gb28181: done, but the audit record failed: {exc}", file=sys.stderr)
        return 1
    return 0


async def _record_cli_events(url: str, key: bytes | None, events: list[_Event]) -> None:
    """Append records made by the operator at the console (actor ``cli``) to the trail."""
    from .audit import AuditLog
    from .store import open_store

    async with await open_store(url) as store:
        audit = AuditLog(store, key=key)
        await audit.resume()
        for action, target, extra in events:
            # The actor is whoever runs the command (and can read the CA key).
            audit.record(action, target, "ok", principal_id="cli", source="cli", extra=extra)
        await audit.flush()


def _cert_event(action: str, path: Path) -> _Event:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    cert = x509.load_pem_x509_certificate(path.read_bytes())
    extra = {"serial": f"{cert.serial_number:X}", "sha256": cert.fingerprint(hashes.SHA256()).hex()}
    return action, cert.subject.rfc4514_string(), extra


def _cmd_certs_init_ca(args: argparse.Namespace) -> int:
    from certs import init_ca

    directory = _ca_dir(args)
    return _certs_op(
        lambda: init_ca(directory, args.subject, algorithm=args.algorithm, valid_days=args.days),
        args,
        lambda: ("ca.init", directory, {"subject": args.subject, "algorithm": args.algorithm}),
    )


def _cmd_certs_issue(args: argparse.Namespace) -> int:
    from certs import issue_to_files

    directory = _ca_dir(args)
    return _certs_op(
        lambda: issue_to_files(
            directory,
            kind=args.kind,
            subject_id=args.id,
            department=args.department,
            level=args.level,
            scope=args.scope,
            windows=args.windows,
            roles=args.roles,
            valid_days=args.days,
            out_dir=args.out_dir,
            subject_alt_names=tuple(args.san),
        ),
        args,
        lambda: _cert_event("cert.issue", Path(args.out_dir) / f"{args.id}.cert.pem"),
    )


def _cmd_certs_revoke(args: argparse.Namespace) -> int:
    from certs import revoke_serial

    directory = _ca_dir(args)
    result = _certs_op(
        lambda: revoke_serial(directory, args.serial, args.reason),
        args,
        lambda: ("cert.revoke", args.serial.upper(), {"reason": args.reason, "ca": directory}),
    )
    if result != 0 or not (args.config or args.store_url):
        return result
    # The certificate's bearer tokens die with it (they grant what it grants).
    import asyncio
    import time

    from .store import StoreError, open_store

    serial = f"{int(args.serial.replace(':', ''), 16):X}"

    async def revoke_tokens(url: str) -> int:
        async with await open_store(url) as store:
            return await store.revoke_api_tokens(at=time.time(), cert_serial=serial)

    url, _ = _audit_settings(args)
    try:
        count = asyncio.run(revoke_tokens(url))
    except StoreError as exc:
        print(f"gb28181: certificate revoked, but its tokens were not: {exc}", file=sys.stderr)
        return 1
    print(f"revoked {count} bearer token(s) issued against it")
    return 0


def _cmd_certs_token(args: argparse.Namespace) -> int:
    """Issue a bearer token bound to a certificate the CA issued (the holder runs as it)."""
    import asyncio
    import time

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    from certs import CertError, CertificateAuthority, verify_certificate

    from .store import ApiToken, StoreError, open_store
    from .tokens import hash_token, new_token

    try:
        cert = x509.load_pem_x509_certificate(Path(args.certfile).read_bytes())
        identity = verify_certificate(cert, [CertificateAuthority.open(_ca_dir(args)).certificate])
    except (OSError, ValueError, CertError) as exc:
        print(f"gb28181: certs token: {exc}", file=sys.stderr)
        return 1
    token = new_token()
    now = time.time()
    row = ApiToken(
        hash_token(token),
        identity.subject_id,
        cert.fingerprint(hashes.SHA256()).hex(),
        f"{cert.serial_number:X}",
        now,
        expires_at=now + args.days * 86400 if args.days else None,
        note=args.note,
    )

    async def store_token(url: str) -> None:
        async with await open_store(url) as store:
            await store.add_api_token(row)

    url, _ = _audit_settings(args)
    try:
        asyncio.run(store_token(url))
    except StoreError as exc:
        print(f"gb28181: certs token: {exc}", file=sys.stderr)
        return 1
    print(f"bearer token for {identity.subject_id} (shown once, store it safely): {token}")
    extra = {"cert_sha256": row.cert_sha256, "principal": identity.subject_id}
    return _audit_cli_event(args, ("token.issue", identity.subject_id, extra))


def _cmd_certs_bind(args: argparse.Namespace) -> int:
    """Bind a certificate to a SIP account that authenticates by digest (UDP/TCP peers)."""
    import asyncio
    import time

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization

    from certs import CertError, CertificateAuthority, verify_certificate

    from .store import CertBinding, StoreError, open_store

    try:
        cert = x509.load_pem_x509_certificate(Path(args.certfile).read_bytes())
        ca = CertificateAuthority.open(_ca_dir(args))
        identity = verify_certificate(cert, [ca.certificate])
    except (OSError, ValueError, CertError) as exc:
        print(f"gb28181: certs bind: {exc}", file=sys.stderr)
        return 1
    if identity.subject_id != args.account:
        print(
            f"gb28181: certs bind: certificate is for {identity.subject_id}, not {args.account}",
            file=sys.stderr,
        )
        return 1
    binding = CertBinding(
        args.account,
        cert.public_bytes(serialization.Encoding.PEM).decode("ascii"),
        cert.fingerprint(hashes.SHA256()).hex(),
        f"{cert.serial_number:X}",
        time.time(),
        note=args.note,
    )

    async def bind(url: str) -> None:
        async with await open_store(url) as store:
            await store.put_cert_binding(binding)

    url, _ = _audit_settings(args)
    try:
        asyncio.run(bind(url))
    except StoreError as exc:
        print(f"gb28181: certs bind: {exc}", file=sys.stderr)
        return 1
    print(f"bound certificate {binding.cert_serial} (level {identity.level}) to {args.account}")
    extra = {"serial": binding.cert_serial, "sha256": binding.cert_sha256}
    return _audit_cli_event(args, ("cert.bind", args.account, extra))


def _cmd_certs_crl(args: argparse.Namespace) -> int:
    from certs import write_crl

    directory = _ca_dir(args)
    return _certs_op(
        lambda: write_crl(directory, args.out, valid_days=args.days),
        args,
        lambda: ("crl.write", str(args.out), {"ca": directory}),
    )


def _cmd_certs_show(args: argparse.Namespace) -> int:
    from certs import show_certificate

    return _certs_op(lambda: show_certificate(args.file))


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _add_certs(sub: Any) -> None:
    certs = sub.add_parser("certs", help="the platform's certificate authority")
    certs_sub = certs.add_subparsers(dest="certs_command", metavar="ACTION", required=True)

    def ca_parser(name: str, help_text: str) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = certs_sub.add_parser(name, help=help_text)
        parser.add_argument(
            "--ca-dir", metavar="DIR", help=f"CA directory (default {DEFAULT_CA_DIR})"
        )
        parser.add_argument("--config", "-c", metavar="PATH", help="read [certs] ca_dir from here")
        parser.add_argument(
            "--store-url", metavar="URL", help="audit to this store (default: with --config)"
        )
        parser.add_argument("--key-file", metavar="PATH", help="audit HMAC key")
        return parser

    init = ca_parser("init-ca", "create a certificate authority")
    init.add_argument("--subject", default="GB28181 Platform CA", help="CA common name")
    init.add_argument("--algorithm", default="ecdsa-p256", help="key algorithm")
    init.add_argument("--days", type=_positive, default=3650, help="validity in days")
    init.set_defaults(func=_cmd_certs_init_ca)

    issue = ca_parser("issue", "issue a permission certificate (writes ID.cert.pem, ID.key.pem)")
    issue.add_argument("--kind", default="user", help="user, platform, device or department-client")
    issue.add_argument("--id", required=True, help="holder ID (a GB ID for platforms/devices)")
    issue.add_argument("--department", required=True, help="the holder's department")
    issue.add_argument("--level", type=int, required=True, help="permission level 1-4")
    issue.add_argument("--scope", default="*", help="e.g. '3702*,37020000001320000001'")
    issue.add_argument("--windows", default="", help="e.g. 'months=6-9;flag=wartime'")
    issue.add_argument("--roles", default="", help="e.g. 'emergency-manager'")
    issue.add_argument("--days", type=_positive, default=365, help="validity in days")
    issue.add_argument("--out-dir", default=".", metavar="DIR", help="where to write the files")
    issue.add_argument(
        "--san", action="append", default=[], metavar="NAME", help="DNS name or IP (repeatable)"
    )
    issue.set_defaults(func=_cmd_certs_issue)

    revoke = ca_parser("revoke", "revoke a certificate by serial (hex, as shown)")
    revoke.add_argument("serial")
    revoke.add_argument("--reason", default="unspecified", help="an RFC 5280 reason name")
    revoke.set_defaults(func=_cmd_certs_revoke)

    bind = ca_parser("bind", "bind a certificate to a SIP account (digest-only peers)")
    bind.add_argument("account", help="the account's 20-digit ID")
    bind.add_argument("certfile", metavar="CERTFILE", help="PEM certificate issued to it")
    bind.add_argument("--note", default="", help="free text kept with the binding")
    bind.set_defaults(func=_cmd_certs_bind)

    token = ca_parser("token", "issue an HTTP API bearer token bound to a certificate")
    token.add_argument("certfile", metavar="CERTFILE", help="PEM certificate the CA issued")
    token.add_argument("--days", type=int, default=0, help="expiry in days (0: the cert's)")
    token.add_argument("--note", default="", help="free text kept with the token")
    token.set_defaults(func=_cmd_certs_token)

    crl = ca_parser("crl", "sign and write a certificate revocation list (PEM)")
    crl.add_argument("--out", required=True, metavar="FILE")
    crl.add_argument("--days", type=_positive, default=7, help="days until the next update")
    crl.set_defaults(func=_cmd_certs_crl)

    show = certs_sub.add_parser("show", help="print a certificate and its permission")
    show.add_argument("file", metavar="FILE")
    show.set_defaults(func=_cmd_certs_show)


# -- audit ------------------------------------------------------------------------------------

AUDIT_PAGE = 1000


def _audit_settings(args: argparse.Namespace) -> tuple[str, bytes | None]:
    """The store URL and HMAC key: options first, then the configuration file."""
    from .audit import AuditConfigError, load_key

    config = _load(args.config)
    url = args.store_url or config.storage.url
    key_file = args.key_file or getattr(getattr(config, "audit", None), "key_file", "")
    if not key_file:
        return url, None
    try:
        return url, load_key(key_file)
    except AuditConfigError as exc:
        print(f"gb28181: configuration error: audit.key_file: {exc}", file=sys.stderr)
        raise SystemExit(EXIT_CONFIG) from None


def _parse_anchor(text: str) -> tuple[int, str]:
    seq, sep, digest = text.partition(":")
    if not sep or not seq.isdigit() or len(digest) != 64:
        raise argparse.ArgumentTypeError(f"expected SEQ:HASH (64 hex digits), got {text!r}")
    return int(seq), digest.lower()


async def _verify_store(
    url: str, key: bytes | None, anchor: tuple[int, str] | None
) -> tuple[bool, str]:
    from authz.audit import GENESIS, verify

    from .store import open_store

    head = (0, GENESIS)
    count = 0
    async with await open_store(url) as store:
        while True:
            page = await store.load_audit(after_seq=head[0], limit=AUDIT_PAGE)
            if not page:
                break
            result = verify(page, key=key, start=head)
            if not result.ok:
                checked = count + result.count
                return False, (
                    f"audit trail BROKEN at seq {result.broken_seq}: {result.reason} "
                    f"({checked} records read)"
                )
            count += result.count
            head = (result.last_seq, result.last_hash)
    if anchor is not None and head != anchor:
        return False, (
            f"audit trail BROKEN at seq {head[0] + 1}: chain ends at seq {head[0]}, "
            f"anchor is seq {anchor[0]} ({count} records read)"
        )
    return True, f"audit trail OK: {count} records, head seq {head[0]} hash {head[1]}"


def _cmd_audit_verify(args: argparse.Namespace) -> int:
    import asyncio

    from .store import StoreError

    url, key = _audit_settings(args)
    try:
        ok, text = asyncio.run(_verify_store(url, key, args.anchor))
    except StoreError as exc:
        print(f"gb28181: audit: {exc}", file=sys.stderr)
        return 1
    print(text, file=sys.stdout if ok else sys.stderr)
    return 0 if ok else 1


async def _export_store(url: str, out: Any) -> int:
    from authz.audit import to_jsonl

    from .store import open_store

    after = 0
    count = 0
    async with await open_store(url) as store:
        while page := await store.load_audit(after_seq=after, limit=AUDIT_PAGE):
            out.write(to_jsonl(page))
            count += len(page)
            after = page[-1].seq
    return count


def _cmd_audit_export(args: argparse.Namespace) -> int:
    import asyncio

    from .store import StoreError

    url, _ = _audit_settings(args)
    try:
        if args.out == "-":
            count = asyncio.run(_export_store(url, sys.stdout))
        else:
            with open(args.out, "w", encoding="utf-8", newline="\n") as out:
                count = asyncio.run(_export_store(url, out))
    except (StoreError, OSError) as exc:
        print(f"gb28181: audit: {exc}", file=sys.stderr)
        return 1
    print(f"exported {count} audit records to {args.out}", file=sys.stderr)
    return 0


def _add_audit(sub: Any) -> None:
    audit = sub.add_parser("audit", help="the tamper-evident audit trail")
    audit_sub = audit.add_subparsers(dest="audit_command", metavar="ACTION", required=True)

    def store_parser(name: str, help_text: str) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = audit_sub.add_parser(name, help=help_text)
        parser.add_argument("--config", "-c", metavar="PATH", help="TOML configuration file")
        parser.add_argument("--store-url", metavar="URL", help="overrides [storage] url")
        parser.add_argument("--key-file", metavar="PATH", help="HMAC key (overrides config)")
        return parser

    verify = store_parser("verify", "check the whole hash chain (exit 1 when broken)")
    verify.add_argument(
        "--anchor",
        type=_parse_anchor,
        metavar="SEQ:HASH",
        help="a published head; detects dropped newest records",
    )
    verify.set_defaults(func=_cmd_audit_verify)
    export = store_parser("export", "write the trail as JSON lines")
    export.add_argument("--out", required=True, metavar="FILE", help="output file, - for stdout")
    export.set_defaults(func=_cmd_audit_export)


# -- admin ------------------------------------------------------------------------------------


async def add_admin_token(
    store: Store, cert_path: Path, name: str, department: str
) -> tuple[str, list[_Event]]:
    """Store a bearer token bound to the administrator's certificate in an open ``store``.

    Returns the token and the audit events of the two issues (certificate and token), for
    the caller to append to the trail that has the live writer.
    """
    import time

    from .store import ApiToken
    from .tokens import hash_token, new_token

    action, subject, cert_extra = _cert_event("cert.issue", cert_path)
    token = new_token()
    await store.add_api_token(
        ApiToken(
            hash_token(token),
            name,
            cert_extra["sha256"],
            cert_extra["serial"],
            time.time(),
            note="admin create",
        )
    )
    cert_extra.update(kind="user", level=1, department=department, admin=True)
    token_extra = {"cert_sha256": cert_extra["sha256"], "principal": name}
    return token, [(action, subject, cert_extra), ("token.issue", name, token_extra)]


async def _store_admin_token(
    url: str,
    key: bytes | None,
    cert_path: Path,
    name: str,
    department: str,
    record: Callable[[list[_Event]], None] | None = None,
) -> str:
    """Store a token bound to the certificate; audit both issues (through ``record`` when
    given: the running platform's own trail). Returns the token."""
    from .store import open_store

    async with await open_store(url) as store:
        token, events = await add_admin_token(store, cert_path, name, department)
    if record is not None:
        record(events)
    else:
        await _record_cli_events(url, key, events)
    return token


class AdminError(Exception):
    """``admin create`` failed; the message says at which step."""


def create_admin(
    ca_dir: str,
    store_url: str,
    *,
    name: str,
    department: str,
    out_dir: str = ".",
    key: bytes | None = None,
    roles: str = "",
    days: int = 365,
    record: Callable[[list[_Event]], None] | None = None,
) -> tuple[str, str]:
    """Issue a level-1 user certificate and a bearer token bound to it; audit both.

    The one way to create an administrator (there are no default credentials). Runs its
    own event loop: call it from synchronous code or another thread. The audit records go
    to the store's trail, or to ``record`` (``[(action, target, extra), ...]``) when the
    trail has a live writer: a platform running on the same database holds the chain head,
    and a second writer would fork the chain.

    :returns: (the certificate's description, the token).
    :raises AdminError: the certificate or the token could not be made.
    """
    import asyncio

    from certs import CertError, issue_to_files

    from .store import StoreError

    try:
        text = issue_to_files(
            ca_dir,
            kind="user",
            subject_id=name,
            department=department,
            level=1,
            scope="*",
            roles=roles,
            valid_days=days,
            out_dir=out_dir,
        )
    except (CertError, ValueError) as exc:
        raise AdminError(str(exc)) from None
    cert_path = Path(out_dir) / f"{name}.cert.pem"
    try:
        token = asyncio.run(_store_admin_token(store_url, key, cert_path, name, department, record))
    except (StoreError, OSError) as exc:
        raise AdminError(f"certificate issued but no token stored: {exc}") from None
    return text, token


def _cmd_admin_create(args: argparse.Namespace) -> int:
    directory = _ca_dir(args)
    url, key = _audit_settings(args)
    try:
        text, token = create_admin(
            directory,
            url,
            name=args.name,
            department=args.department,
            out_dir=args.out_dir,
            key=key,
            roles=args.roles,
            days=args.days,
        )
    except AdminError as exc:
        print(f"gb28181: admin: {exc}", file=sys.stderr)
        return 1
    print(text, end="")
    print(f"bearer token (shown once, store it safely): {token}")
    return 0


def _add_admin(sub: Any) -> None:
    admin = sub.add_parser("admin", help="platform administrators")
    admin_sub = admin.add_subparsers(dest="admin_command", metavar="ACTION", required=True)
    create = admin_sub.add_parser(
        "create", help="issue a level-1 user certificate and a bearer token bound to it"
    )
    create.add_argument("--name", required=True, help="the administrator's ID")
    create.add_argument("--department", required=True, help="the administrator's department")
    create.add_argument("--roles", default="", help="e.g. 'emergency-manager'")
    create.add_argument("--days", type=_positive, default=365, help="certificate validity")
    create.add_argument("--out-dir", default=".", metavar="DIR", help="where to write the files")
    create.add_argument("--ca-dir", metavar="DIR", help=f"CA directory (default {DEFAULT_CA_DIR})")
    create.add_argument("--config", "-c", metavar="PATH", help="TOML configuration file")
    create.add_argument("--store-url", metavar="URL", help="overrides [storage] url")
    create.add_argument("--key-file", metavar="PATH", help="audit HMAC key (overrides config)")
    create.set_defaults(func=_cmd_admin_create)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for tests and docs)."""
    parser = argparse.ArgumentParser(
        prog="gb28181", description="GB/T 28181 SIP signalling server and media gateway"
    )
    parser.add_argument("--version", action="version", version=f"gb28181 {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    serve = sub.add_parser("serve", help="run the server")
    serve.add_argument("--config", "-c", metavar="PATH", help="TOML configuration file")
    serve.set_defaults(func=_cmd_serve)
    check = sub.add_parser("check-config", help="validate a configuration file and exit")
    check.add_argument("--config", "-c", metavar="PATH", help="TOML configuration file")
    check.set_defaults(func=_cmd_check_config)
    _add_certs(sub)
    _add_audit(sub)
    _add_admin(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``gb28181`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return EXIT_CONFIG
    result: int = args.func(args)
    return result


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
