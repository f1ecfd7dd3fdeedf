"""Packaging: the optional TPU extra must not move protobuf away from what TensorFlow needs."""

import json
import subprocess
import sys

import pytest
from helpers import REPO
from packaging.requirements import Requirement

pytestmark = pytest.mark.e2e  # Every test here starts the trainer or another program.


def tensorflow_protobuf_requirement() -> Requirement:
    from importlib.metadata import requires

    return next(Requirement(r) for r in requires("tensorflow") if r.startswith("protobuf"))


def test_tpu_extra_keeps_protobuf_at_what_tensorflow_needs(tmp_path):
    report = tmp_path / "report.json"
    result = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--quiet", "--report", str(report), f"{REPO}[tpu]"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if result.returncode != 0 and "No matching distribution" in result.stderr + result.stdout:
        pytest.skip("the package index is not reachable")
    assert result.returncode == 0, result.stderr[-2000:]
    installs = {
        item["metadata"]["name"].lower(): item["metadata"]["version"]
        for item in json.loads(report.read_text())["install"]
    }
    assert "cloud-tpu-client" in installs
    from importlib.metadata import version

    protobuf = installs.get("protobuf", version("protobuf"))
    assert tensorflow_protobuf_requirement().specifier.contains(protobuf), protobuf
