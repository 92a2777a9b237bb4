"""The CLI's error contract, shared by the CLI tests: one ``dahash: error:`` line, exit code 1 (runtime) or 2
(usage), no traceback."""

from __future__ import annotations

import pytest


def one_line_error(capsys: pytest.CaptureFixture[str], code: int, expected: int | None = None) -> str:
    """The single error line printed for exit ``code`` (asserting the contract: 1 for a runtime error, 2 for
    a usage error; ``expected`` pins which)."""
    err = capsys.readouterr().err
    assert code in (1, 2), err
    assert expected is None or code == expected, (code, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("dahash: error: ")
    assert "Traceback" not in err
    return lines[0]
