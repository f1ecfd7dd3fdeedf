"""`mllaunch local`: an N-worker MultiWorkerMirrored job on this machine, one process per worker.

Each worker gets TF_CONFIG naming free loopback ports; logs are streamed with a `[worker i]`
prefix. If one worker fails, the others are stopped (MultiWorkerMirrored cannot go on
without it); with `restart_on_failure`, the whole group is started again, as a Kubernetes
JobSet would, and resumes from its checkpoint. SIGTERM or SIGINT (Ctrl-C) to the launcher stops
the workers the way Kubernetes stops pods: SIGTERM (each saves a checkpoint and exits 75), then
SIGKILL after the grace period. Exit codes are the workers' as a shell reports them (128 + N when
signal N killed one); after SIGINT, 130.
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
EXIT_PREEMPTED = 75  # trainer.errors.EXIT_PREEMPTED: the worker saved a checkpoint and stopped.
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


def exit_code(process: subprocess.Popen) -> int:
    """The exit code as a shell reports it: 128 + N when signal N killed the process (SIGKILL: 137)."""
    return 128 - process.returncode if process.returncode < 0 else process.returncode


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


def _start(num_workers: int, trainer_args: Sequence[str], out) -> List[subprocess.Popen]:
    """The workers, SIGINT ignored: Ctrl-C reaches the whole process group, and the launcher turns it into
    SIGTERM, which the trainer answers with a save. (Python keeps an inherited SIG_IGN for SIGINT.)"""
    ports = free_ports(num_workers)
    processes = []
    handler = signal.signal(signal.SIGINT, signal.SIG_IGN)  # A Ctrl-C in these milliseconds is lost.
    try:
        for index in range(num_workers):
            env = dict(os.environ, TF_CONFIG=tf_config(ports, index))
            command = [sys.executable, "-m", "trainer", *trainer_args]
            processes.append(subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT))
            out.write(f"[launch] worker {index}: pid {processes[-1].pid}, TF_CONFIG {env['TF_CONFIG']}\n")
    finally:
        signal.signal(signal.SIGINT, handler)
    return processes


def run_group(num_workers: int, trainer_args: Sequence[str], out=sys.stdout, stop_signals: Sequence[int] = ()) -> int:
    """Starts the workers, waits; returns 0 if all succeed, else the first failing worker's exit code.

    Once `stop_signals` (appended to by a signal handler) holds a signal, stops the workers and returns
    75 if every one saved and stopped, else the code of one that did not."""
    processes = _start(num_workers, trainer_args, out)
    threads = [
        threading.Thread(target=_stream, args=(f"[worker {index}]", process.stdout, out), daemon=True)
        for index, process in enumerate(processes)
    ]
    for thread in threads:
        thread.start()
    failure = 0
    try:
        while any(p.poll() is None for p in processes):
            if stop_signals:
                name = signal.Signals(stop_signals[0]).name
                out.write(f"[launch] {name}: stopping the workers (SIGTERM, SIGKILL after {STOP_GRACE_SECONDS} s)\n")
                break
            failed = [p for p in processes if p.poll() not in (None, 0)]
            if failed:
                failure = exit_code(failed[0])
                out.write(f"[launch] worker {processes.index(failed[0])} exited with {failure}; stopping the others\n")
                break
            time.sleep(0.2)
    finally:
        _stop(processes)
        for thread in threads:
            thread.join(timeout=5)
    if failure:
        return failure
    codes = [exit_code(p) for p in processes]
    # After a stop: a worker that neither finished nor saved (killed, failed) outweighs the others' 75.
    unclean = [c for c in codes if c not in (0, EXIT_PREEMPTED)]
    if unclean:
        return unclean[0]
    return EXIT_PREEMPTED if EXIT_PREEMPTED in codes else 0


def run_local(num_workers: int, trainer_args: Sequence[str], restart_on_failure: int = 0, out=sys.stdout) -> int:
    """Runs the group, restarting it up to `restart_on_failure` times after a failure (not a user error).

    SIGTERM or SIGINT stops the group and never restarts it: the result is the group's (75 when every
    worker saved), or 130 after SIGINT, as a shell reports Ctrl-C."""
    stop_signals: List[int] = []
    handlers = {
        s: signal.signal(s, lambda signum, _: stop_signals.append(signum)) for s in (signal.SIGTERM, signal.SIGINT)
    }
    try:
        for attempt in range(restart_on_failure + 1):
            if attempt:
                out.write(
                    f"[launch] restarting all {num_workers} workers (restart {attempt} of {restart_on_failure})\n"
                )
            code = run_group(num_workers, trainer_args, out, stop_signals)
            if stop_signals and stop_signals[0] == signal.SIGINT:
                return 128 + signal.SIGINT
            if stop_signals or code in (0, EXIT_USER_ERROR):
                return code
        return code
    finally:
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
