"""Packaging: which TensorFlow distribution pip installs, and that the optional TPU client extra
does not move protobuf away from what TensorFlow needs. These resolve against the package index
(pip --dry-run: nothing is installed) and skip when it is unreachable."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import REPO as REPO_DIR
from packaging.requirements import Requirement

REPO = Path(REPO_DIR)

# Distributions that install the `tensorflow` module; an environment may hold only one of them.
TENSORFLOW_MODULE_DISTRIBUTIONS = {"tensorflow", "tensorflow-cpu", "tensorflow-intel", "tensorflow-tpu", "tf-nightly"}

pytestmark = pytest.mark.e2e  # Every test here starts pip or another program.


def tensorflow_protobuf_requirement() -> Requirement:
    from importlib.metadata import requires

    return next(Requirement(r) for r in requires("tensorflow") if r.startswith("protobuf"))


def resolve(requirements, tmp_path, env=None) -> dict:
    """{name: version} pip would install into an empty environment for `requirements`."""
    report = tmp_path / "report.json"
    result = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet", "--report",
         str(report), *requirements],
        capture_output=True,
        text=True,
        timeout=600,
        env=dict(os.environ, **(env or {})),
    )  # fmt: skip
    if result.returncode != 0 and "No matching distribution" in result.stderr + result.stdout:
        pytest.skip("the package index is not reachable")
    assert result.returncode == 0, result.stderr[-3000:]
    return {
        re.sub(r"[-_.]+", "-", item["metadata"]["name"]).lower(): item["metadata"]["version"]
        for item in json.loads(report.read_text())["install"]
    }


def source_copy(tmp_path) -> str:
    """What the images copy, in a directory of its own: building metadata there (with whichever
    MLTRAIN_TENSORFLOW) leaves this checkout's mltrain.egg-info alone."""
    source = tmp_path / "src"
    source.mkdir()
    shutil.copy(REPO / "setup.py", source)
    for package in ("trainer", "launch"):
        shutil.copytree(REPO / package, source / package, ignore=shutil.ignore_patterns("__pycache__"))
    return str(source)


def dockerfile_args(path):
    """The ARG defaults of a Dockerfile: what `docker build` uses unless told otherwise."""
    return dict(re.findall(r"^ARG (\w+)=(\S+)$", path.read_text(), re.MULTILINE))


def test_default_install_is_the_cpu_gpu_tensorflow_within_the_supported_range(tmp_path):
    installs = resolve([source_copy(tmp_path)], tmp_path, env={"MLTRAIN_TENSORFLOW": "tensorflow"})
    assert TENSORFLOW_MODULE_DISTRIBUTIONS & installs.keys() == {"tensorflow"}
    assert re.fullmatch(r"2\.2[01]\.\d+", installs["tensorflow"]), installs["tensorflow"]
    assert installs["tensorboard"].split(".")[:2] == installs["tensorflow"].split(".")[:2]
    assert "libtpu" not in installs


def test_tpu_image_set_resolves_with_tensorflow_tpu_and_never_tensorflow(tmp_path):
    # Dockerfile.tpu's two pip steps as one resolution: TensorFlow for TPU and its libtpu at the
    # image's pins, then this package built with MLTRAIN_TENSORFLOW=tensorflow-tpu.
    args = dockerfile_args(REPO / "Dockerfile.tpu")
    image_env = dict(re.findall(r"(MLTRAIN_TENSORFLOW)=(\S+)", (REPO / "Dockerfile.tpu").read_text()))
    assert image_env == {"MLTRAIN_TENSORFLOW": "tensorflow-tpu"}
    pins = [f"tensorflow-tpu=={args['TENSORFLOW_TPU_VERSION']}", f"libtpu=={args['LIBTPU_VERSION']}"]
    installs = resolve([*pins, source_copy(tmp_path)], tmp_path, env=image_env)
    assert TENSORFLOW_MODULE_DISTRIBUTIONS & installs.keys() == {"tensorflow-tpu"}
    assert installs["tensorflow-tpu"] == args["TENSORFLOW_TPU_VERSION"] == "2.20.0"
    assert installs["libtpu"] == args["LIBTPU_VERSION"]
    assert installs["tensorboard"].startswith("2.20.")
    assert "tensorflow-tpu==2.20.0" in (REPO / "setup.py").read_text()  # The image's pin is the package's.


def test_an_unknown_tensorflow_distribution_is_refused(tmp_path):
    result = subprocess.run(
        [sys.executable, "setup.py", "--name"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ, MLTRAIN_TENSORFLOW="tensorflow-gpu"),
    )
    assert result.returncode == 1
    assert "MLTRAIN_TENSORFLOW=tensorflow-gpu is not a TensorFlow distribution" in result.stderr
    assert "use one of tensorflow, tensorflow-tpu" in result.stderr


def test_tpu_extra_keeps_protobuf_at_what_tensorflow_needs(tmp_path):
    installs = resolve([f"{source_copy(tmp_path)}[tpu]"], tmp_path)
    assert "cloud-tpu-client" in installs
    from importlib.metadata import version

    protobuf = installs.get("protobuf", version("protobuf"))
    assert tensorflow_protobuf_requirement().specifier.contains(protobuf), protobuf
