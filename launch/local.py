"""`mllaunch local`: an N-worker MultiWorkerMirrored job on this machine, one process per worker.

Each worker gets TF_CONFIG naming free loopback ports; logs are streamed with a `[worker i]`
prefix. If one worker fails, the others are stopped (MultiWorkerMirrored cannot go on
without it); with `restart_on_failure`, the whole group is started again, as a Kubernetes
JobSet would, and resumes from its checkpoint.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import List, Sequence

EXIT_USER_ERROR = 1  # trainer.errors.EXIT_USER_ERROR; a user error is never retried.
STOP_GRACE_SECONDS = 30


def free_ports(count: int) -> List[int]:
    """Ports the OS reports free on loopback (bound together so they are distinct)."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def tf_config(ports: Sequence[int], index: int) -> str:
    return json.dumps(
        {"cluster": {"worker": [f"localhost:{p}" for p in ports]}, "task": {"type": "worker", "index": index}}
    )


def _stream(prefix: str, pipe, out) -> None:
    for line in iter(pipe.readline, b""):
        out.write(f"{prefix} {line.decode(errors='replace')}")
        out.flush()


def _stop(processes: List[subprocess.Popen]) -> None:
    """SIGTERM (the trainer saves and exits), then SIGKILL whatever is left after the grace period."""
    for p in processes:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    deadline = time.time() + STOP_GRACE_SECONDS
    for p in processes:
        try:
            p.wait(timeout=max(deadline - time.time(), 0.1))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def run_group(num_workers: int, trainer_args: Sequence[str], out=sys.stdout) -> int:
    """Starts the workers, waits; returns 0 if all succeed, else the first failing worker's exit code."""
    ports = free_ports(num_workers)
    processes, threads = [], []
    for index in range(num_workers):
        env = dict(os.environ, TF_CONFIG=tf_config(ports, index))
        process = subprocess.Popen(
            [sys.executable, "-m", "trainer", *trainer_args], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        thread = threading.Thread(target=_stream, args=(f"[worker {index}]", process.stdout, out), daemon=True)
        thread.start()
        processes.append(process)
        out.write(f"[launch] worker {index}: pid {process.pid}, TF_CONFIG {env['TF_CONFIG']}\n")
        threads.append(thread)
    failure = 0
    try:
        while any(p.poll() is None for p in processes):
            failed = [p for p in processes if p.poll() not in (None, 0)]
            if failed:
                failure = failed[0].returncode
                out.write(f"[launch] worker {processes.index(failed[0])} exited with {failure}; stopping the others\n")
                break
            time.sleep(0.2)
    finally:
        _stop(processes)
        for thread in threads:
            thread.join(timeout=5)
    codes = [p.returncode for p in processes]
    return failure or next((c for c in codes if c != 0), 0)


def run_local(num_workers: int, trainer_args: Sequence[str], restart_on_failure: int = 0, out=sys.stdout) -> int:
    """Runs the group, restarting it up to `restart_on_failure` times after a failure (not a user error)."""
    for attempt in range(restart_on_failure + 1):
        if attempt:
            out.write(f"[launch] restarting all {num_workers} workers (restart {attempt} of {restart_on_failure})\n")
        code = run_group(num_workers, trainer_args, out)
        if code in (0, EXIT_USER_ERROR):
            return code
    return code
