"""On a busy machine torch's threads wait passively (issue 28 item 13); benchmarks/contention.py measures it."""

from __future__ import annotations

import os
import subprocess
import sys

from fairgrape_cli import cli


def test_the_command_line_makes_idle_threads_sleep_unless_the_user_chose(monkeypatch):
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    cli._threads_wait_passively()
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    cli._threads_wait_passively()
    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE"


def test_it_is_set_before_torch_loads_its_thread_pool():
    # OpenMP reads the variable once, when torch loads it: the entry point must set it first
    probe = (
        "import os, sys; sys.argv = ['fairgrape', 'report', '--help'];"
        "from fairgrape_cli.cli import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "assert 'torch' not in sys.modules or os.environ.get('OMP_WAIT_POLICY') == 'PASSIVE'\n"
        "import torch; print(os.environ['OMP_WAIT_POLICY'])"
    )
    env = {key: value for key, value in os.environ.items() if key != "OMP_WAIT_POLICY"}
    done = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "PASSIVE"
