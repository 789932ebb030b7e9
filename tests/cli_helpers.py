"""What every entry point's refusal looks like to a test: exit status 2 and one `error:` line naming the problem."""

import contextlib
import re

import pytest


@contextlib.contextmanager
def refused(capsys, pattern: str):
    """The block must end with exit status 2 and, last on stderr, one `error: ...` line that `pattern` finds."""
    with pytest.raises(SystemExit) as stopped:
        yield
    lines = capsys.readouterr().err.strip().splitlines()
    assert stopped.value.code == 2, f"exit status {stopped.value.code}, stderr {lines}"
    assert lines and lines[-1].startswith("error: ") and re.search(pattern, lines[-1]), lines
