"""One writer per run folder: ``run`` holds OUTPUT/run.lock; a second run there is refused naming
the lock and its holder; a lock whose process is gone is taken over with a warning."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from fairgrape_cli.errors import InputError
from fairgrape_cli.io.locks import FolderLock

from tiny_runs import QUICK, run_folder

ROOT = Path(__file__).resolve().parent.parent
HOLD = "import sys; from fairgrape_cli.io.locks import FolderLock; FolderLock(sys.argv[1]).acquire(); print('held', flush=True); sys.stdin.read()"


def _dead_pid() -> int:
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(finished.stdout)


def test_a_second_run_is_refused_and_a_killed_holders_lock_taken_over(tmp_path, cli, tiny_model_path, biased_data):
    config = run_folder(tmp_path, "r", tiny_model_path, biased_data, **QUICK)
    output = config.parent / "run"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(output)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert holder.stdout.readline().strip() == "held"
        refused = cli("run", config, "-q")
        assert refused.code == 2, refused
        lines = [line for line in refused.err.splitlines() if line.strip()]
        assert len(lines) == 1 and "Traceback" not in refused.err, refused.err
        assert str(output / "run.lock") in lines[0] and f"pid {holder.pid} on {socket.gethostname()}" in lines[0]
        assert list(output.iterdir()) == [output / "run.lock"]  # nothing else was written
    finally:
        holder.kill()  # SIGKILL: the holder cannot remove its lock file
        holder.wait()

    assert (output / "run.lock").exists()
    resumed = cli("run", config)
    assert resumed.code == 0, resumed
    assert f"run.lock was left by pid {holder.pid}" in resumed.err and "taking it over" in resumed.err
    assert not (output / "run.lock").exists() and (output / "report.json").is_file()


def test_a_lock_file_naming_a_live_process_is_respected(tmp_path):
    """Even where the OS lock is free (a lock written by hand, or a file system whose locks are
    local only): a process on this host that still runs is not overridden."""
    (tmp_path / "run.lock").write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname()}))
    with pytest.raises(InputError, match=f"run.lock is held by pid {os.getpid()} on"):
        FolderLock(tmp_path).acquire()
    (tmp_path / "run.lock").write_text(f"{os.getpid()}\n")  # a bare pid, as other tools write
    with pytest.raises(InputError, match=f"held by pid {os.getpid()}"):
        FolderLock(tmp_path).acquire()


@pytest.mark.parametrize("content", ["dead", "reused", "garbage"])
def test_stale_lock_files_are_taken_over(tmp_path, content):
    dead = _dead_pid()
    text = {
        "dead": json.dumps({"pid": dead, "host": socket.gethostname(), "started": "yesterday"}),
        # this very pid, but recorded with another start time: the pid was reused since
        "reused": json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "process_start": 1}),
        "garbage": "\x00\x01 not a lock",
    }[content]
    (tmp_path / "run.lock").write_text(text)
    with FolderLock(tmp_path) as lock:
        assert lock.taken_over is not None
        held = json.loads((tmp_path / "run.lock").read_text())
        assert held["pid"] == os.getpid() and held["host"] == socket.gethostname()
    assert not (tmp_path / "run.lock").exists()


def test_one_holder_at_a_time_even_within_a_process(tmp_path):
    with FolderLock(tmp_path) as first:
        assert first.taken_over is None
        with pytest.raises(InputError, match="another fairgrape run is writing"):
            FolderLock(tmp_path).acquire()
    with FolderLock(tmp_path) as again:  # released: free again, and not stale
        assert again.taken_over is None
