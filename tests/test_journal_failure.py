"""The journal when its file cannot be written (a full disk, an I/O error, a file size limit).

The failure is real: the journal runs in a forked child whose file size limit (RLIMIT_FSIZE,
what ``ulimit -f`` sets) is lowered to just past the journal's length, so the kernel cuts the
next write short and refuses the rest (EFBIG), as a full disk does (ENOSPC); later the limit is
raised again, as an operator freeing space would.
"""

from __future__ import annotations

import logging
import os
import pickle
import resource
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from engine.journal import Journal, read_journal


def in_child(fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)`` in a forked child (its file size limit is its own); its result, pickled
    back through a pipe. The child ends with ``os._exit``: nothing is closed or flushed."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            out = pickle.dumps(("ok", fn(*args)))
        except BaseException:
            out = pickle.dumps(("error", traceback.format_exc()))
        with os.fdopen(w, "wb") as f:  # a pipe: no file size limit applies
            f.write(out)
        os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        data = f.read()
    os.waitpid(pid, 0)
    status, value = pickle.loads(data)
    assert status == "ok", value
    return value


class Logs(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.records: list[tuple[str, str, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append((record.levelname, record.name, record.getMessage()))


def _capture_logs() -> Logs:
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    logs = Logs()
    root.addHandler(logs)
    root.setLevel(logging.INFO)
    return logs


def _limit_file_size(nbytes: int) -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, hard))


def _unlimit_file_size() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard))


@pytest.mark.parametrize("fsync", ["never", "batch", "always"])
def test_a_short_write_is_cut_off_and_held_records_are_written_in_order(tmp_path, fsync):
    """A record the kernel cut short must not stay in the file: once writes succeed again it
    would be damage in the middle, and the next start would refuse the journal."""

    def child(path: Path) -> dict[str, Any]:
        j = Journal.open(path, fsync=fsync)
        failures: list[str] = []
        j.on_failure = lambda journal: failures.append(journal.problem)
        written = [j.append_cancel(1, 1)]
        size = os.path.getsize(path)
        _limit_file_size(size + 10)
        written += [j.append_cancel(i, i) for i in range(2, 6)]
        cut = os.path.getsize(path)
        retried = j.retry()
        _unlimit_file_size()
        written.append(j.append_cancel(6, 6))  # held: behind the others
        recovered = j.retry()
        written.append(j.append_cancel(7, 7))
        return {
            "size": size, "cut": cut, "written": written, "failures": failures,
            "retried": retried, "recovered": recovered, "error": j.error,
        }  # fmt: skip

    path = tmp_path / "j.twj"
    out = in_child(child, path)
    assert out["cut"] == out["size"], "the torn part of the record was cut off"
    assert out["written"] == [True, False, False, False, False, False, True]
    assert not out["retried"] and out["recovered"] and out["error"] == ""
    assert len(out["failures"]) == 1 and "File too large (EFBIG)" in out["failures"][0]
    contents = read_journal(path)
    assert contents.corrupt_at is None and contents.torn == 0
    assert [r.client_order_id for r in contents.records] == [1, 2, 3, 4, 5, 6, 7]
    Journal.open(path).close()


def test_close_says_what_it_could_not_write_is_lost(tmp_path):
    def child(path: Path) -> list[str]:
        logs = _capture_logs()
        j = Journal.open(path, fsync="batch")
        _limit_file_size(os.path.getsize(path))
        j.append_cancel(1, 1)
        j.append_cancel(2, 2)
        j.close()
        return [m for lvl, _, m in logs.records if lvl == "CRITICAL"]

    (critical,) = in_child(child, tmp_path / "j.twj")
    assert "2 records" in critical and "lost" in critical and "File too large" in critical
