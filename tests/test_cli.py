"""Command line: version, config errors exit 2 naming the key, check-config."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gb28181 import __version__
from gb28181.cli import main

ROOT = Path(__file__).resolve().parent.parent


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert __version__ in capsys.readouterr().out


def test_no_command_prints_help_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "serve" in capsys.readouterr().err


def test_check_config_ok(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-config", "--config", str(ROOT / "conf" / "gb28181.toml")]) == 0
    assert "configuration OK" in capsys.readouterr().out


def test_serve_with_bad_config_exits_2_naming_the_key(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[sip]\nid = "42"\n')
    proc = subprocess.run(
        [sys.executable, "-m", "gb28181", "serve", "--config", str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "sip.id" in proc.stderr
