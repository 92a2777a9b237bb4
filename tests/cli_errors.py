"""The CLI's error contract, shared by the CLI tests: one ``dahash: error:`` line, exit code 2, no traceback."""

from __future__ import annotations

import pytest


def one_line_error(capsys: pytest.CaptureFixture[str], code: int) -> str:
    """The single error line printed for exit ``code`` (asserting the contract)."""
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("dahash: error: ")
    assert "Traceback" not in err
    return lines[0]
