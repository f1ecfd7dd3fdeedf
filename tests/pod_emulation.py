"""Runs the pods of a rendered Indexed Job (or JobSet) on this machine, started as a kubelet would start them.

Every pod gets exactly the env and args its manifest gives (downward-API fields resolved as the
Job controller and kubelet would, plus JOB_COMPLETION_INDEX), the image's ENV and ENTRYPOINT
(read from the Dockerfile) and then, in `netns` mode (root with iproute2):
- its own network namespace and pod IP on a private bridge, and an /etc/hosts in which every
  pod's DNS name resolves as the headless Service publishes it;
- its own hostname (`<job>-<index>`), volumes bind-mounted at their mountPaths (the claim shared,
  emptyDirs per pod), a read-only root filesystem, its runAsUser/runAsGroup/fsGroup and
  no_new_privs (allowPrivilegeEscalation: false).
In `loopback` mode (no namespaces) the pods share this machine's network and filesystem: the
entrypoint's documented MLTRAIN_ADDRESS_OVERRIDES maps each pod's DNS name to a loopback port,
and mountPaths in the args are rewritten to the volumes' host directories.

A JobSet becomes the child Jobs its controller would create (`jobset_child_jobs`), and
`run_jobset` plays the controller's failure policy: when a pod fails, the rendered failurePolicy
decides (tests/manifests.py `jobset_action`), and a restart deletes every pod (SIGTERM, then
SIGKILL after the grace period; BlockingRecreate: all gone first) and starts the whole group again.
"""

import copy
import dataclasses
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

from manifests import jobset_action

NAMESPACE = "default"
SANDBOX = Path(__file__).with_name("pod_sandbox.py")  # Runs inside each pod's namespaces.


@dataclasses.dataclass
class Pod:
    """One pod of the Job, as the kubelet would start it."""

    index: int
    hostname: str
    env: Dict[str, str]
    command: List[str]
    mounts: List[Dict[str, str]]  # {"source": host dir or "tmpfs", "target": mountPath}
    uid: int
    gid: int
    fs_group: Optional[int]
    read_only_root: bool
    ip: str = ""
    process: Optional[subprocess.Popen] = None
    log_path: Optional[Path] = None


def dockerfile_image(dockerfile: Path) -> Dict[str, object]:
    """The ENTRYPOINT (exec form) and ENV of the Dockerfile's final stage."""
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    entrypoint, env = None, {}
    for line in text.splitlines():
        keyword, _, rest = line.strip().partition(" ")
        if keyword.upper() == "ENTRYPOINT":
            entrypoint = json.loads(rest)
        elif keyword.upper() == "ENV":
            for assignment in shlex.split(rest):
                name, _, value = assignment.partition("=")
                env[name] = value
    return {"entrypoint": entrypoint, "env": env}


def _field(path: str, metadata: Dict[str, object]) -> str:
    """A downward-API fieldRef, e.g. metadata.labels['batch.kubernetes.io/job-name']."""
    match = re.fullmatch(r"metadata\.(labels|annotations)\['([^']+)'\]", path)
    if match:
        return str(metadata[match.group(1)][match.group(2)])
    if path in ("metadata.name", "metadata.namespace"):
        return str(metadata[path.split(".")[1]])
    raise ValueError(f"the emulation does not resolve fieldRef {path}")


def job_pods(job: dict, image: Dict[str, object], volume_dirs: Dict[str, str]) -> List[Pod]:
    """The pods the Job controller would create; `volume_dirs` maps a volume name to a host dir."""
    name, spec = job["metadata"]["name"], job["spec"]
    template = spec["template"]
    pod_spec = template["spec"]
    (container,) = [c for c in pod_spec["containers"] if c["name"] == "trainer"]
    security = {**pod_spec.get("securityContext", {}), **container.get("securityContext", {})}
    volumes = {v["name"]: v for v in pod_spec.get("volumes", [])}
    pods = []
    for index in range(spec["completions"]):
        hostname = f"{name}-{index}"
        # What the Job controller adds to every pod of an Indexed Job.
        index_key = "batch.kubernetes.io/job-completion-index"
        labels = {**template["metadata"].get("labels", {}), "batch.kubernetes.io/job-name": name, "job-name": name}
        labels[index_key] = str(index)
        metadata = {
            "name": f"{hostname}-emul",
            "namespace": NAMESPACE,
            "labels": labels,
            "annotations": {index_key: str(index)},
        }
        env = {"PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin", **image["env"]}
        env["HOSTNAME"] = hostname
        env["JOB_COMPLETION_INDEX"] = str(index)
        for variable in container.get("env", []):
            if "value" in variable:
                env[variable["name"]] = variable["value"]
            else:
                env[variable["name"]] = _field(variable["valueFrom"]["fieldRef"]["fieldPath"], metadata)
        command = container.get("command") or list(image["entrypoint"])
        if command[:2] == ["/usr/bin/tini", "--"]:
            command = command[2:]  # tini only forwards signals to its child when it is PID 1; here it is not.
        command = [*command, *container.get("args", [])]
        mounts = []
        for mount in container.get("volumeMounts", []):
            volume = volumes[mount["name"]]
            if volume.get("emptyDir", {}).get("medium") == "Memory":
                source = "tmpfs"
            elif "emptyDir" in volume:
                source = os.path.join(volume_dirs[mount["name"]], hostname)  # One emptyDir per pod.
            else:
                source = volume_dirs[mount["name"]]
            mounts.append({"source": source, "target": mount["mountPath"]})
        pods.append(
            Pod(
                index=index,
                hostname=hostname,
                env=env,
                command=command,
                mounts=mounts,
                uid=security["runAsUser"],
                gid=security.get("runAsGroup", security["runAsUser"]),
                fs_group=pod_spec.get("securityContext", {}).get("fsGroup"),
                read_only_root=bool(container.get("securityContext", {}).get("readOnlyRootFilesystem")),
            )
        )
    return pods


def jobset_child_jobs(jobset: dict) -> List[dict]:
    """The Jobs the JobSet controller creates: `<jobset>-<replicatedJob>-<i>`, with the JobSet's labels
    on their pods and, with DNS hostnames enabled, `spec.network.subdomain` as the pods' subdomain."""
    name, spec = jobset["metadata"]["name"], jobset["spec"]
    network = spec.get("network", {})
    jobs = []
    for replicated_job in spec["replicatedJobs"]:
        for job_index in range(replicated_job.get("replicas", 1)):
            job = copy.deepcopy(replicated_job["template"])
            job["metadata"] = {"name": f"{name}-{replicated_job['name']}-{job_index}"}
            template = job["spec"]["template"]
            template.setdefault("metadata", {}).setdefault("labels", {}).update(
                {
                    "jobset.sigs.k8s.io/jobset-name": name,
                    "jobset.sigs.k8s.io/replicatedjob-name": replicated_job["name"],
                    "jobset.sigs.k8s.io/job-index": str(job_index),
                }
            )
            if network.get("enableDNSHostnames"):
                template["spec"]["subdomain"] = network.get("subdomain", name)
            jobs.append(job)
    return jobs


def published_domain(job: dict, services: Sequence[dict]) -> str:
    """The DNS domain under which the headless Service publishes the Job's pods (as `<hostname>.<domain>`):
    only a Service named as the pods' `subdomain` whose selector matches their labels does that."""
    template = job["spec"]["template"]
    subdomain, labels = template["spec"].get("subdomain"), template["metadata"].get("labels", {})
    for service in services:
        selector = service["spec"].get("selector", {})
        if service["metadata"]["name"] == subdomain and selector.items() <= labels.items():
            return subdomain
    raise AssertionError(f"no Service named {subdomain!r} selects the Job's pods: their DNS names would not resolve")


def _prepare_volumes(pods: Sequence[Pod]) -> None:
    """Creates the host dirs; fsGroup makes them the pod group's, as the kubelet does."""
    for pod in pods:
        for mount in pod.mounts:
            if mount["source"] != "tmpfs":
                os.makedirs(mount["source"], exist_ok=True)
                if os.geteuid() == 0 and pod.fs_group is not None:
                    os.chown(mount["source"], pod.uid, pod.fs_group)
                    os.chmod(mount["source"], 0o2775)


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


def netns_available() -> Optional[str]:
    """None when pods can get network namespaces here, else why not."""
    if os.geteuid() != 0:
        return "not root"
    if not shutil.which("ip") and shutil.which("apt-get"):
        # A fresh Debian machine may lack iproute2; installing it is what `ip netns` needs.
        subprocess.run(["apt-get", "update", "-qq"], capture_output=True, timeout=300)
        subprocess.run(["apt-get", "install", "-y", "-qq", "iproute2"], capture_output=True, timeout=300)
    if not shutil.which("ip") or not shutil.which("unshare"):
        return "iproute2 or util-linux missing"
    probe = f"mltprobe{os.getpid()}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None if made.returncode == 0 else f"ip netns add failed: {made.stderr.strip()}"


class NetnsCluster:
    """A bridge in a namespace of its own (no uplink: nothing leaves it) and one namespace per pod."""

    def __init__(self, pods: Sequence[Pod], service: str):
        self.pods, self.service = pods, service
        tag = os.getpid() % 100_000
        self.subnet = f"10.213.{tag % 250}"
        self.node = f"mlt{tag}-node"
        self.names = [f"mlt{tag}-pod{pod.index}" for pod in pods]

    def __enter__(self) -> "NetnsCluster":
        try:
            _ip("netns", "add", self.node)
            _ip("-n", self.node, "link", "add", "br0", "type", "bridge")
            _ip("-n", self.node, "link", "set", "br0", "up")
            for pod, name in zip(self.pods, self.names):
                pod.ip = f"{self.subnet}.{10 + pod.index}"
                _ip("netns", "add", name)
                port = f"pod{pod.index}"
                _ip("-n", self.node, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", name)
                _ip("-n", self.node, "link", "set", port, "master", "br0", "up")
                _ip("-n", name, "addr", "add", f"{pod.ip}/24", "dev", "eth0")
                _ip("-n", name, "link", "set", "eth0", "up")
                _ip("-n", name, "link", "set", "lo", "up")
            for pod, name in zip(self.pods, self.names):
                # `ip netns exec` bind-mounts /etc/netns/<name>/* over /etc/*.
                os.makedirs(f"/etc/netns/{name}", exist_ok=True)
                Path(f"/etc/netns/{name}/hosts").write_text(self.hosts_file(pod))
        except BaseException:
            self.__exit__()
            raise
        return self

    def hosts_file(self, own: Pod) -> str:
        """The kubelet's /etc/hosts entry for the pod, plus what cluster DNS answers for the others."""
        lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
        for pod in self.pods:
            fqdn = f"{pod.hostname}.{self.service}.{NAMESPACE}.svc.cluster.local"
            names = [fqdn, f"{pod.hostname}.{self.service}"] + ([pod.hostname] if pod is own else [])
            lines.append(f"{pod.ip}\t{' '.join(names)}")
        return "\n".join(lines) + "\n"

    def launch(self, pod: Pod, spec_path: Path) -> List[str]:
        name = self.names[pod.index]
        return ["ip", "netns", "exec", name, "unshare", "--mount", "--uts", "--propagation", "private", "--",
                sys.executable, str(SANDBOX), str(spec_path)]  # fmt: skip

    def __exit__(self, *exc) -> None:
        for name in [*self.names, self.node]:
            subprocess.run(["ip", "netns", "del", name], capture_output=True)
            subprocess.run(["rm", "-rf", f"/etc/netns/{name}"], capture_output=True)
        if os.path.isdir("/etc/netns") and not os.listdir("/etc/netns"):
            os.rmdir("/etc/netns")  # Leave /etc as it was (ours, unless someone else's is in use).


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def loopback_pods(pods: Sequence[Pod], service: str) -> None:
    """Fallback: each pod's DNS name becomes a loopback port; mountPaths in args become host dirs."""
    overrides = ",".join(f"{pod.hostname}.{service}=127.0.0.1:{_free_port()}" for pod in pods)
    for pod in pods:
        pod.env["MLTRAIN_ADDRESS_OVERRIDES"] = overrides
        mounts = sorted((m for m in pod.mounts if m["source"] != "tmpfs"), key=lambda m: -len(m["target"]))
        pod.command = [_host_path(arg, mounts) for arg in pod.command]
        pod.env.update({name: _host_path(value, mounts) for name, value in pod.env.items() if name != "PATH"})
        pod.env["TMPDIR"] = _host_path("/tmp", mounts)


def _host_path(arg: str, mounts: Sequence[Dict[str, str]]) -> str:
    """`--flag=/mount/path/x` or `/mount/path/x` with the mountPath replaced by the volume's host dir."""
    flag, sep, value = arg.partition("=") if arg.startswith("--") else ("", "", arg)
    for mount in mounts:
        if value == mount["target"] or value.startswith(mount["target"].rstrip("/") + "/"):
            return f"{flag}{sep}{mount['source']}{value[len(mount['target']) :]}"
    return arg


def _start(pod: Pod, cluster: Optional[NetnsCluster], log_path: Path, work_dir: Path, cwd: str) -> None:
    pod.log_path = log_path
    if cluster:
        spec_path = work_dir / f"{pod.hostname}.json"
        spec_path.write_text(json.dumps({**dataclasses.asdict(pod), "process": None, "log_path": None, "cwd": cwd}))
        argv, env, run_cwd = cluster.launch(pod, spec_path), {"PATH": os.environ["PATH"]}, "/"
    else:
        argv, env, run_cwd = pod.command, pod.env, cwd
        argv = [sys.executable if argv[0] == "python" else argv[0], *argv[1:]]
    with open(log_path, "wb") as log:
        pod.process = subprocess.Popen(argv, env=env, cwd=run_cwd, stdout=log, stderr=subprocess.STDOUT)


def _kill(pods: Sequence[Pod]) -> None:
    for pod in pods:
        if pod.process and pod.process.poll() is None:
            pod.process.kill()
            pod.process.wait()


def run_pods(pods: Sequence[Pod], service: str, work_dir: Path, cwd: str, mode: str, timeout: float) -> List[int]:
    """Starts every pod at once (parallelism = completions), waits; returns the exit codes."""
    _prepare_volumes(pods)
    cluster = NetnsCluster(pods, service) if mode == "netns" else None
    if cluster is None:
        loopback_pods(pods, service)
    try:
        if cluster:
            cluster.__enter__()
        for pod in pods:
            _start(pod, cluster, work_dir / f"{pod.hostname}.log", work_dir, cwd)
        codes = []
        for pod in pods:
            try:
                codes.append(pod.process.wait(timeout=timeout))
            except subprocess.TimeoutExpired:
                codes.append(None)
        return codes
    finally:
        _kill(pods)
        if cluster:
            cluster.__exit__()


def exit_code(returncode: int) -> int:
    """The container exit code Kubernetes reports: 128 + N for a process killed by signal N."""
    return 128 - returncode if returncode < 0 else returncode


def _delete(pods: Sequence[Pod], grace_seconds: float) -> None:
    """Pod deletion: SIGTERM, then SIGKILL whatever still runs after the grace period."""
    for pod in pods:
        if pod.process.poll() is None:
            pod.process.send_signal(signal.SIGTERM)
    deadline = time.time() + grace_seconds
    for pod in pods:
        try:
            pod.process.wait(timeout=max(deadline - time.time(), 0.1))
        except subprocess.TimeoutExpired:
            pod.process.kill()
            pod.process.wait()


@dataclasses.dataclass
class JobSetRun:
    """What the emulated JobSet went through: one list of pods per attempt, the restarts, the end."""

    attempts: List[List[Pod]]
    restarts: int
    outcome: str  # "Completed", or the failure-policy action that ended it.
    failures: List[str]  # "<hostname> exit <code> -> <action>", in order.


def run_jobset(
    jobset: dict,
    services: Sequence[dict],
    image: Dict[str, object],
    volume_dirs: Dict[str, str],
    work_dir: Path,
    cwd: str,
    mode: str,
    timeout: float,
    grace_seconds: float,
    while_running: Callable[[int, List[Pod]], None] = lambda attempt, pods: None,
) -> JobSetRun:
    """Runs the JobSet's pods as its controller would, restarting the whole group as its failurePolicy
    says. `while_running(attempt, pods)` is called every 50 ms while an attempt runs (to kill a pod)."""
    (child,) = jobset_child_jobs(jobset)  # One replicated Job of one Job: the group of workers.
    service = published_domain(child, services)
    max_restarts = jobset["spec"]["failurePolicy"].get("maxRestarts", 0)
    run = JobSetRun(attempts=[], restarts=0, outcome="", failures=[])
    cluster = None
    deadline = time.time() + timeout
    try:
        while not run.outcome:
            pods = job_pods(child, image, volume_dirs)
            _prepare_volumes(pods)
            if mode == "netns" and cluster is None:
                cluster = NetnsCluster(pods, service).__enter__()  # Same pod IPs for every attempt.
            elif mode != "netns":
                loopback_pods(pods, service)
            attempt = len(run.attempts)
            run.attempts.append(pods)
            for pod in pods:
                _start(pod, cluster, work_dir / f"{pod.hostname}.attempt{attempt}.log", work_dir, cwd)
            while True:
                codes = [pod.process.poll() for pod in pods]
                failed = [pod for pod, code in zip(pods, codes) if code not in (None, 0)]
                if failed:
                    code = exit_code(failed[0].process.returncode)
                    action = jobset_action(jobset, exit_code=code)
                    run.failures.append(f"{failed[0].hostname} exit {code} -> {action}")
                    _delete(pods, grace_seconds)  # BlockingRecreate: the old group is gone first.
                    if action == "FailJobSet" or (action == "RestartJobSet" and run.restarts >= max_restarts):
                        run.outcome = action
                    elif action == "RestartJobSet":
                        run.restarts += 1
                    break
                if all(code == 0 for code in codes):
                    run.outcome = "Completed"
                    break
                if time.time() > deadline:
                    run.outcome = "Timeout"
                    break
                while_running(attempt, pods)
                time.sleep(0.05)
        return run
    finally:
        for pods in run.attempts:
            _kill(pods)
        if cluster:
            cluster.__exit__()
