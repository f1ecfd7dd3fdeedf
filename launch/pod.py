"""`python -m launch.pod -- <trainer flags>` (also `mllaunch pod`): the container's entrypoint.

Builds TF_CONFIG from the pod's environment and execs the trainer, so a plain Indexed Job or
a JobSet runs MultiWorkerMirrored without an operator. When TF_CONFIG is already set (Kubeflow
TFJob sets it), it is left exactly as it is.

Environment read (the manifests in k8s/ set all of it):
  MLTRAIN_WORKERS       Number of workers: the Job's completions (= parallelism). Required.
  JOB_COMPLETION_INDEX  This pod's index 0..workers-1. Kubernetes sets it in Indexed Jobs
                        (JobSet's child Jobs are Indexed Jobs too). Required when workers > 1.
  MLTRAIN_JOB_NAME      The Job's name, from the downward API label `batch.kubernetes.io/job-name`;
                        under JobSet that is the child Job `<jobset>-<replicatedJob>-<jobIndex>`.
                        Required when workers > 1.
  MLTRAIN_SERVICE       The headless Service that is the pods' `subdomain` (under JobSet:
                        `spec.network.subdomain`). Required when workers > 1.
  MLTRAIN_PORT          The port every worker serves on (default 2222).
  MLTRAIN_ADDRESS_OVERRIDES
                        Testing only: `host=address:port,...` replaces the address of the named
                        worker hosts, for emulating pods on one machine's loopback when network
                        namespaces are unavailable. Never set it in a cluster.

Worker i is `<job>-<i>.<service>:<port>`: Kubernetes gives pod i of an Indexed Job the hostname
`<job>-<i>`, and the headless Service publishes it as `<hostname>.<subdomain>` (the pod's DNS
search path adds the namespace). With one worker no TF_CONFIG is set: one process needs no cluster.
"""

import json
import os
import re
import sys
from typing import Dict, List, Mapping, Optional, Sequence

from trainer.errors import EXIT_USER_ERROR, UserError

DEFAULT_PORT = 2222
# RFC 1123 label: what Kubernetes allows for a pod hostname and a Service name.
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_MAX_LABEL_LENGTH = 63


def _integer(env: Mapping[str, str], name: str, minimum: int, maximum: int, fix: str) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        raise UserError(f"{name} is not set: {fix}.")
    try:
        value = int(raw)
    except ValueError:
        raise UserError(f"{name}={raw!r} is not an integer: {fix}.")
    if not minimum <= value <= maximum:
        raise UserError(f"{name}={value} is out of range {minimum}..{maximum}: {fix}.")
    return value


def _dns_label(env: Mapping[str, str], name: str, what: str) -> str:
    value = env.get(name, "").strip()
    if not value:
        raise UserError(f"{name} is not set: set it to {what}.")
    if not _DNS_LABEL.match(value) or len(value) > _MAX_LABEL_LENGTH:
        raise UserError(
            f"{name}={value!r} is not a DNS label (lower-case letters, digits and '-', at most "
            f"{_MAX_LABEL_LENGTH} characters); set it to {what}."
        )
    return value


def _overrides(env: Mapping[str, str], hosts: Sequence[str]) -> Dict[str, str]:
    """Parses MLTRAIN_ADDRESS_OVERRIDES; every key must be one of this job's worker hosts."""
    raw = env.get("MLTRAIN_ADDRESS_OVERRIDES", "").strip()
    overrides = {}
    for item in filter(None, (part.strip() for part in raw.split(","))):
        host, sep, address = item.partition("=")
        if not sep or ":" not in address:
            raise UserError(f"MLTRAIN_ADDRESS_OVERRIDES item {item!r} must look like host=address:port.")
        if host not in hosts:
            raise UserError(
                f"MLTRAIN_ADDRESS_OVERRIDES names {host!r}, which is not a worker host ({', '.join(hosts)})."
            )
        overrides[host] = address
    return overrides


def worker_addresses(env: Mapping[str, str], num_workers: int) -> List[str]:
    """The cluster's worker list, in index order, as the pods of this Job reach each other."""
    job = _dns_label(env, "MLTRAIN_JOB_NAME", "the Job's name (downward API: batch.kubernetes.io/job-name)")
    service = _dns_label(env, "MLTRAIN_SERVICE", "the headless Service named in the pods' subdomain")
    port = DEFAULT_PORT
    if env.get("MLTRAIN_PORT", "").strip():
        port = _integer(env, "MLTRAIN_PORT", 1, 65535, "set it to the port the workers serve on (the Service's port)")
    hostnames = [f"{job}-{index}" for index in range(num_workers)]
    if len(hostnames[-1]) > _MAX_LABEL_LENGTH:
        raise UserError(
            f"pod hostname {hostnames[-1]!r} is longer than {_MAX_LABEL_LENGTH} characters; shorten the Job name."
        )
    hosts = [f"{hostname}.{service}" for hostname in hostnames]
    overrides = _overrides(env, hosts)
    return [overrides.get(host, f"{host}:{port}") for host in hosts]


def tf_config_from_env(env: Mapping[str, str]) -> Optional[str]:
    """TF_CONFIG for this pod, or None for a one-worker job. Raises UserError on bad env vars."""
    num_workers = _integer(
        env, "MLTRAIN_WORKERS", 1, 100_000, "set it to the number of workers (the Job's completions), or set TF_CONFIG"
    )
    index_fix = f"it is this pod's index 0..{num_workers - 1}, which an Indexed Job (completionMode: Indexed) sets"
    if num_workers == 1:
        if env.get("JOB_COMPLETION_INDEX", "").strip():
            _integer(env, "JOB_COMPLETION_INDEX", 0, 0, index_fix)
        return None
    index = _integer(env, "JOB_COMPLETION_INDEX", 0, num_workers - 1, index_fix)
    workers = worker_addresses(env, num_workers)
    return json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}})


def trainer_environment(env: Mapping[str, str]) -> Dict[str, str]:
    """The trainer's environment: `env` with TF_CONFIG derived, unless TF_CONFIG is already set."""
    if env.get("TF_CONFIG", "").strip():
        return dict(env)  # Kubeflow TFJob (or the user) knows the cluster better than we do.
    tf_config = tf_config_from_env(env)
    return dict(env, TF_CONFIG=tf_config) if tf_config else dict(env)


def trainer_flags(argv: Sequence[str]) -> List[str]:
    """Everything after the first `--` (or all of argv when there is none)."""
    argv = list(argv)
    return argv[argv.index("--") + 1 :] if "--" in argv else argv


def main(argv: Sequence[str]) -> None:
    """Sets TF_CONFIG and replaces this process with the trainer (signals then reach it directly)."""
    try:
        env = trainer_environment(os.environ)
    except UserError as e:
        sys.stderr.write(f"error: {e}\n")
        sys.exit(EXIT_USER_ERROR)
    if "TF_CONFIG" in env and "TF_CONFIG" not in os.environ:
        sys.stderr.write(f"[launch.pod] TF_CONFIG={env['TF_CONFIG']}\n")
    sys.stderr.flush()
    command = [sys.executable, "-m", "trainer", *trainer_flags(argv)]
    os.execve(sys.executable, command, env)


if __name__ == "__main__":
    main(sys.argv[1:])
