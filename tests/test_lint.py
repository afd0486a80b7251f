"""Style is part of the test suite: ruff check and ruff format (pyproject.toml) report nothing."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ruff_reports_nothing():
    command = [sys.executable, "-m", "ruff", "check", str(ROOT)]
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format_reports_nothing():
    command = [sys.executable, "-m", "ruff", "format", "--check", str(ROOT)]
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
