"""`asr-data` usage errors are one line on stderr with exit 2, like every other error of the CLIs."""
from __future__ import annotations

import pytest

from asr.data import cli


@pytest.mark.parametrize("argv,expected", [
    ([], "asr-data: error: the following arguments are required: command; see `asr-data --help`"),
    (["doctor", "--bogus"], "asr-data doctor: error: "),
    (["lm", "build", "--order", "x"], "asr-data lm build: error: argument --order: invalid int value: 'x'"),
])
def test_usage_errors_are_one_line(argv, expected, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(expected) and err.count("\n") == 1, err
