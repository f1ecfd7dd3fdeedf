"""Inside one emulated pod's namespaces (as root): `python pod_sandbox.py SPEC.json`.

Sets the pod's hostname, mounts its volumes at their mountPaths, makes the root filesystem
read-only, becomes the pod's user with no_new_privs, then execs the container's command with
exactly the pod's environment. Every mount is in this process's private mount namespace: the
host sees none of it. See pod_emulation.py for the rest.
"""

import ctypes
import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Sequence

_PR_SET_NO_NEW_PRIVS = 38
_MS_BIND = 4096


def _mount_order(mounts: Sequence[Dict[str, str]]) -> List[Dict[str, str]]:
    """Mounts that would hide another mount's source (an emptyDir at /tmp over a source in /tmp) go last."""
    sources = [m["source"] for m in mounts]
    return sorted(mounts, key=lambda m: any(s.startswith(m["target"].rstrip("/") + "/") for s in sources))


def _make_mountpoint(target: str) -> None:
    """A missing mountPath is created on a tmpfs over its nearest existing parent, in this namespace only."""
    if os.path.isdir(target):
        return
    parent = os.path.dirname(target)
    while not os.path.isdir(parent):
        parent = os.path.dirname(parent)
    if parent == "/":
        raise RuntimeError(f"cannot emulate mountPath {target} without writing to /")
    subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=755", "tmpfs", parent], check=True)
    os.makedirs(target)


def _hidden_ancestors(paths: Sequence[str]) -> List[tuple]:
    """(dir, child) pairs where `dir` is closed to other users but `child` leads to a path the pod needs."""
    pairs = []
    for path in paths:
        parts = Path(os.path.realpath(path)).parts
        for depth in range(1, len(parts) - 1):
            directory = os.path.join(*parts[: depth + 1])
            if not os.stat(directory).st_mode & 0o001 and (directory, parts[depth + 1]) not in pairs:
                pairs.append((directory, parts[depth + 1]))
    return pairs


def _make_reachable(paths: Sequence[str]) -> None:
    """Lets a non-root user reach `paths` (the interpreter may live under /root, mode 700) without
    touching the host: a tmpfs over the closed directory, with only the needed child bound back."""
    libc = ctypes.CDLL(None, use_errno=True)
    pairs = _hidden_ancestors(paths)
    fds = [os.open(os.path.join(directory, child), os.O_PATH) for directory, child in pairs]
    for directory in dict.fromkeys(directory for directory, _ in pairs):
        subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=755", "tmpfs", directory], check=True)
    for (directory, child), fd in zip(pairs, fds):
        target = os.path.join(directory, child)
        os.makedirs(target, exist_ok=True)
        # The open fd still names the directory the tmpfs now hides; the kernel follows it.
        if libc.mount(f"/proc/self/fd/{fd}".encode(), target.encode(), None, _MS_BIND, None):
            raise OSError(ctypes.get_errno(), f"bind {directory}/{child}")


def _exec_pod(spec_path: str) -> None:
    """Inside the pod's namespaces (root): hostname, volumes, read-only root, user; then the entrypoint."""
    pod = json.loads(Path(spec_path).read_text())
    socket.sethostname(pod["hostname"])
    for mount in _mount_order(pod["mounts"]):
        _make_mountpoint(mount["target"])
        if mount["source"] == "tmpfs":
            subprocess.run(["mount", "-t", "tmpfs", "tmpfs", mount["target"]], check=True)
        else:
            subprocess.run(["mount", "--bind", mount["source"], mount["target"]], check=True)
    if pod["read_only_root"]:
        # A per-mount flag: read-only in this namespace only, the host's / stays writable.
        subprocess.run(["mount", "-o", "remount,bind,ro", "/"], check=True)
    _make_reachable([sys.executable, os.path.realpath(sys.executable), pod["cwd"]])
    os.chdir(pod["cwd"])
    groups = [pod["fs_group"]] if pod["fs_group"] is not None else []
    os.setgroups(groups)
    os.setgid(pod["gid"])
    os.setuid(pod["uid"])  # Drops every capability: the uid is no longer 0.
    if pod["read_only_root"] and os.access(pod["cwd"], os.W_OK):
        raise RuntimeError("the root filesystem is still writable")
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0):
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")
    os.execvpe(pod["command"][0], pod["command"], pod["env"])


if __name__ == "__main__":
    _exec_pod(sys.argv[1])
