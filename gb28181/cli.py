"""Command line: ``gb28181 serve``, ``gb28181 check-config``, ``gb28181 --version``.

Exit codes: 0 success, 2 bad usage or configuration (the message names the
offending key), 1 anything else.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from . import __version__
from .config import Config, ConfigError, load_config

__all__ = ["main"]

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
