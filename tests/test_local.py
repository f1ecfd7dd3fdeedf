"""`mllaunch local` (launch/local.py) as a user or a scheduler stops it: its exit codes, and no worker
left running behind it."""

import os
import re
import signal
import subprocess
import sys

import pytest
from helpers import REPO, TINY, read_until, start_workers, trainer_env

pytestmark = pytest.mark.e2e  # Every test here starts the launcher and its workers.

# Long enough to be stopped while training, small enough to be quick if a stop does not work.
FLAGS = TINY + ["--mode=train", "--train_steps=2000", "--hidden_units=16", "--checkpoint_every_steps=100000"]


def worker_pids(process, lines):
    return [int(read_until(process.stdout, rf"\[launch\] worker {i}: pid (\d+)", lines).group(1)) for i in (0, 1)]


def alive(pid) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def stopped(process, lines, pids):
    """The launcher's remaining output, once it has exited; SIGKILLs any worker it left running."""
    try:
        output = "".join(lines) + process.communicate(timeout=180)[0]
    finally:
        left = [pid for pid in pids if alive(pid)]
        for pid in left:
            os.kill(pid, signal.SIGKILL)
    assert not left, f"workers {left} outlived the launcher:\n{''.join(lines)[-3000:]}"
    return output


def test_a_worker_killed_by_a_signal_exits_128_plus_the_signal(tmp_path):
    """kill -9 of a worker: the launcher exits 137, as a shell reports it, not sys.exit(-9) = 247."""
    process, lines = start_workers(2, FLAGS + [f"--model_dir={tmp_path}"]), []
    pids = worker_pids(process, lines)
    read_until(process.stdout, r"\[worker 1\].*\[train\] step", lines)
    # The chief: its peer then fails too (exit 2), and the launcher reports the first in index order.
    os.kill(pids[0], signal.SIGKILL)
    output = stopped(process, lines, pids)
    assert process.returncode == 128 + signal.SIGKILL, output[-3000:]


def test_sigterm_to_the_launcher_stops_every_worker_with_a_save_and_exits_75(tmp_path):
    """SIGTERM to the launcher (a scheduler stopping it) reaches every worker: both save and exit 75."""
    process, lines = start_workers(2, FLAGS + [f"--model_dir={tmp_path}"]), []
    pids = worker_pids(process, lines)
    read_until(process.stdout, r"\[worker 1\].*\[train\] step", lines)
    process.send_signal(signal.SIGTERM)
    output = stopped(process, lines, pids)
    assert process.returncode == 75, output[-3000:]
    assert "Traceback" not in output, output[-3000:]
    steps = set(re.findall(r"\[worker [01]\] preempted: stopped by SIGTERM at step (\d+)", output))
    assert len(steps) == 1 and output.count("preempted: stopped by SIGTERM") == 2, output[-3000:]
    assert os.path.exists(os.path.join(tmp_path, "checkpoints", f"ckpt-{steps.pop()}.index"))


def test_ctrl_c_stops_every_worker_with_a_save_and_exits_130(tmp_path):
    """Ctrl-C (SIGINT to the launcher and its workers, one process group): the launcher stops the workers
    with SIGTERM, so both save; it exits 130, with no KeyboardInterrupt traceback anywhere."""
    process = subprocess.Popen(
        [sys.executable, "-m", "launch", "local", "--workers=2", "--", *FLAGS, f"--model_dir={tmp_path}"],
        cwd=REPO,
        env=trainer_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # Its own process group, as a terminal's foreground job.
    )
    lines = []
    pids = worker_pids(process, lines)
    read_until(process.stdout, r"\[worker 1\].*\[train\] step", lines)
    os.killpg(process.pid, signal.SIGINT)
    output = stopped(process, lines, pids)
    assert process.returncode == 128 + signal.SIGINT, output[-3000:]
    assert "Traceback" not in output and "KeyboardInterrupt" not in output, output[-3000:]
    assert output.count("preempted: stopped by SIGTERM") == 2, output[-3000:]
