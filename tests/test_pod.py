"""launch.pod: TF_CONFIG from the pod's environment, and the rendered Job's and JobSet's pods really training.

The last tests take the rendered multi-worker manifests and start their two pods the way a kubelet
would (pod_emulation.py), each in its own network namespace where that is possible; the JobSet's
controller is played too: a worker is killed, the whole group restarts and finishes from the checkpoint.
"""

import json
import os
import re
import signal
import subprocess
import sys

import pytest
from manifests import REPO, render, requires_kubectl
from pod_emulation import (
    dockerfile_image,
    job_pods,
    jobset_child_jobs,
    netns_available,
    published_domain,
    run_jobset,
    run_pods,
)

from launch import pod
from trainer.errors import UserError

INDEXED_JOB_ENV = {
    "MLTRAIN_WORKERS": "3",
    "JOB_COMPLETION_INDEX": "1",
    "MLTRAIN_JOB_NAME": "exp1-mltrain",
    "MLTRAIN_SERVICE": "exp1-mltrain-workers",
    "MLTRAIN_PORT": "2222",
}


def test_indexed_job_env_gives_every_pods_dns_name():
    spec = json.loads(pod.tf_config_from_env(INDEXED_JOB_ENV))
    assert spec == {
        "cluster": {"worker": [f"exp1-mltrain-{i}.exp1-mltrain-workers:2222" for i in range(3)]},
        "task": {"type": "worker", "index": 1},
    }


def test_jobset_child_job_names_give_jobset_hostnames():
    # JobSet "train", replicatedJob "slice", Job index 0: pods are train-slice-0-<i>.<subdomain>.
    env = dict(INDEXED_JOB_ENV, MLTRAIN_JOB_NAME="train-slice-0", MLTRAIN_SERVICE="train", JOB_COMPLETION_INDEX="2")
    spec = json.loads(pod.tf_config_from_env(env))
    assert spec["cluster"]["worker"] == [f"train-slice-0-{i}.train:2222" for i in range(3)]
    assert spec["task"] == {"type": "worker", "index": 2}


def test_port_defaults_to_2222_and_one_worker_needs_no_cluster():
    env = {k: v for k, v in INDEXED_JOB_ENV.items() if k != "MLTRAIN_PORT"}
    assert json.loads(pod.tf_config_from_env(env))["cluster"]["worker"][0].endswith(":2222")
    assert pod.tf_config_from_env({"MLTRAIN_WORKERS": "1", "JOB_COMPLETION_INDEX": "0"}) is None
    assert "TF_CONFIG" not in pod.trainer_environment({"MLTRAIN_WORKERS": "1"})


def test_tf_config_already_set_is_left_alone():
    # Kubeflow TFJob sets TF_CONFIG (and none of our variables).
    tfjob_config = '{"cluster": {"worker": ["mltrain-worker-0.ns.svc:2222"]}, "task": {"type": "worker", "index": 0}}'
    assert pod.trainer_environment({"TF_CONFIG": tfjob_config})["TF_CONFIG"] == tfjob_config


def test_address_overrides_replace_named_hosts_only():
    env = dict(INDEXED_JOB_ENV, MLTRAIN_ADDRESS_OVERRIDES="exp1-mltrain-2.exp1-mltrain-workers=127.0.0.1:5000")
    workers = json.loads(pod.tf_config_from_env(env))["cluster"]["worker"]
    assert workers[2] == "127.0.0.1:5000" and workers[0] == "exp1-mltrain-0.exp1-mltrain-workers:2222"
    with pytest.raises(UserError, match="not a worker host"):
        pod.tf_config_from_env(dict(env, MLTRAIN_ADDRESS_OVERRIDES="typo-0.svc=127.0.0.1:5000"))


@pytest.mark.e2e
@pytest.mark.parametrize(
    "change, named",
    [
        ({"MLTRAIN_WORKERS": None}, "MLTRAIN_WORKERS is not set"),
        ({"MLTRAIN_WORKERS": "two"}, "MLTRAIN_WORKERS='two' is not an integer"),
        ({"JOB_COMPLETION_INDEX": None}, "JOB_COMPLETION_INDEX is not set"),
        ({"JOB_COMPLETION_INDEX": "3"}, "JOB_COMPLETION_INDEX=3 is out of range 0..2"),
        ({"MLTRAIN_JOB_NAME": None}, "MLTRAIN_JOB_NAME is not set"),
        ({"MLTRAIN_SERVICE": "Bad_Name"}, "MLTRAIN_SERVICE='Bad_Name' is not a DNS label"),
        ({"MLTRAIN_PORT": "70000"}, "MLTRAIN_PORT=70000 is out of range"),
    ],
)
def test_bad_or_missing_env_is_one_line_and_exit_1(change, named):
    env = {k: v for k, v in {**os.environ, **INDEXED_JOB_ENV, **change}.items() if v is not None}
    env.pop("TF_CONFIG", None)
    result = subprocess.run(
        [sys.executable, "-m", "launch.pod", "--", "--model_dir=/nowhere"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: ") and named in result.stderr


@pytest.mark.e2e
def test_mllaunch_pod_is_the_same_entrypoint():
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLTRAIN_") and k != "TF_CONFIG"}
    result = subprocess.run(
        [sys.executable, "-m", "launch", "pod", "--", "--model_dir=/nowhere"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1 and result.stderr.startswith("error: MLTRAIN_WORKERS is not set")


# Tiny settings: the point is the wiring, not the model.
TINY_RUN = [
    "--mode=train",
    "--train_steps=20",
    "--global_batch_size=64",
    "--hidden_units=32",
    "--synthetic_train_examples=2000",
    "--synthetic_eval_examples=500",
    "--steps_per_loop=10",
    "--log_every_steps=10",
    "--model_dir=/mnt/model/emulated",
]


def emulation_mode(pods, capsys) -> str:
    """`netns` where this machine allows network namespaces, else `loopback`; printed in every run."""
    # The pods run this checkout's code and venv, so no volume may hide them (e.g. a checkout in /tmp).
    hidden = [m["target"] for m in pods[0].mounts if REPO.is_relative_to(m["target"])]
    why_not = (
        netns_available()
        or (hidden and f"the checkout is under {hidden[0]}, which a pod volume hides")
        or (os.environ.get("POD_EMULATION") == "loopback" and "POD_EMULATION=loopback")
    )
    mode = "loopback" if why_not else "netns"
    with capsys.disabled():
        print(f"\npod emulation: {mode}" + (f" (netns not possible: {why_not})" if why_not else ""))
    return mode


@requires_kubectl
def test_rendered_two_worker_job_trains_to_identical_weights(tmp_path, capsys):
    docs = render("multi-worker-gpu", workers=2, flags=TINY_RUN, prefix="")
    (job,) = [d for d in docs if d["kind"] == "Job"]
    domain = published_domain(job, [d for d in docs if d["kind"] == "Service"])
    volume_dirs = {v["name"]: str(tmp_path / "volumes" / v["name"]) for v in job["spec"]["template"]["spec"]["volumes"]}
    pods = job_pods(job, dockerfile_image(REPO / "Dockerfile"), volume_dirs)
    assert len(pods) == 2
    mode = emulation_mode(pods, capsys)
    codes = run_pods(pods, domain, tmp_path, cwd=str(REPO), mode=mode, timeout=150)
    logs = [p.log_path.read_text(errors="replace") for p in pods]
    assert codes == [0, 0], "\n\n".join(
        f"--- pod {i} ({mode}) exit {c}\n{log[-3000:]}" for i, (c, log) in enumerate(zip(codes, logs))
    )

    # Every pod derived the same cluster from its own env; in netns mode it names pods by DNS.
    configs = [json.loads(re.search(r"TF_CONFIG=(\{.*\})", log).group(1)) for log in logs]
    assert [c["task"]["index"] for c in configs] == [0, 1]
    assert configs[0]["cluster"] == configs[1]["cluster"]
    if mode == "netns":
        assert configs[0]["cluster"]["worker"] == [f"mltrain-{i}.mltrain-workers:2222" for i in range(2)]
    digests = [re.findall(r"weights sha256 ([0-9a-f]{64})", log) for log in logs]
    assert digests[0] and digests[0] == digests[1], digests
    # The chief wrote the checkpoint onto the claim, through the mountPath in the manifest's args.
    assert (tmp_path / "volumes" / "model" / "emulated" / "checkpoints" / "checkpoint").exists()


# Long enough that a worker can be killed between the first checkpoint and the end.
KILLED_RUN = [
    *[flag for flag in TINY_RUN if not flag.startswith("--train_steps")],
    "--train_steps=300",
    "--checkpoint_every_steps=20",
]


@requires_kubectl
def test_rendered_jobset_restarts_the_group_after_a_killed_worker_and_finishes_from_the_checkpoint(tmp_path, capsys):
    docs = render("multi-worker-gpu-jobset", workers=2, flags=KILLED_RUN, prefix="", max_restarts=1)
    (jobset,) = [d for d in docs if d["kind"] == "JobSet"]
    (child,) = jobset_child_jobs(jobset)
    volume_dirs = {
        v["name"]: str(tmp_path / "volumes" / v["name"]) for v in child["spec"]["template"]["spec"]["volumes"]
    }
    image = dockerfile_image(REPO / "Dockerfile")
    mode = emulation_mode(job_pods(child, image, volume_dirs), capsys)
    checkpoint_index = tmp_path / "volumes" / "model" / "emulated" / "checkpoints" / "checkpoint"
    killed_after = []

    def kill_worker_1_after_the_first_checkpoint(attempt, pods):
        if attempt == 0 and not killed_after and checkpoint_index.exists():
            killed_after.append(checkpoint_index.read_text())
            pods[1].process.send_signal(signal.SIGKILL)  # Node lost, OOM-killed: no save, no goodbye.

    run = run_jobset(
        jobset, [d for d in docs if d["kind"] == "Service"], image, volume_dirs, tmp_path, cwd=str(REPO), mode=mode,
        timeout=600, grace_seconds=30, while_running=kill_worker_1_after_the_first_checkpoint,
    )  # fmt: skip
    logs = [[p.log_path.read_text(errors="replace") for p in pods] for pods in run.attempts]
    shown = "\n\n".join(
        f"--- attempt {a} pod {i} ({mode})\n{log[-2500:]}"
        for a, attempt in enumerate(logs)
        for i, log in enumerate(attempt)
    )
    assert killed_after, f"worker 1 was never killed: the run ended before its first checkpoint\n{shown}"
    # The kill failed the child Job (backoffLimit 0); no rule matches 137, so the JobSet restarted everything.
    assert run.failures == ["mltrain-worker-0-1 exit 137 -> RestartJobSet"], (run.failures, shown)
    assert (run.outcome, run.restarts, len(run.attempts)) == ("Completed", 1, 2), shown

    # The new group found the checkpoint on the claim and both workers went on from the same step.
    resumed = [re.findall(r"Resuming at step (\d+) of 300", log) for log in logs[1]]
    assert resumed[0] and resumed[0] == resumed[1], (resumed, shown)
    assert 20 <= int(resumed[0][0]) < 300
    digests = [re.findall(r"done at step 300; weights sha256 ([0-9a-f]{64})", log) for log in logs[1]]
    assert digests[0] and digests[0] == digests[1], (digests, shown)
    if mode == "netns":  # The restarted pods have the same DNS names: the same TF_CONFIG.
        configs = [json.loads(re.search(r"TF_CONFIG=(\{.*\})", log).group(1)) for log in logs[1]]
        assert configs[0]["cluster"]["worker"] == [f"mltrain-worker-0-{i}.mltrain-workers:2222" for i in range(2)]


@requires_kubectl
def test_rendered_jobset_fails_at_once_on_a_user_error(tmp_path, capsys):
    docs = render("multi-worker-gpu-jobset", workers=2, flags=[*TINY_RUN, "--hidden_units=a,b"], prefix="")
    (jobset,) = [d for d in docs if d["kind"] == "JobSet"]
    (child,) = jobset_child_jobs(jobset)
    volume_dirs = {
        v["name"]: str(tmp_path / "volumes" / v["name"]) for v in child["spec"]["template"]["spec"]["volumes"]
    }
    image = dockerfile_image(REPO / "Dockerfile")
    run = run_jobset(
        jobset, [d for d in docs if d["kind"] == "Service"], image, volume_dirs, tmp_path, cwd=str(REPO),
        mode=emulation_mode(job_pods(child, image, volume_dirs), capsys), timeout=300, grace_seconds=10,
    )  # fmt: skip
    assert run.outcome == "FailJobSet" and run.restarts == 0 and len(run.attempts) == 1, run.failures
    assert run.failures[0].endswith("exit 1 -> FailJobSet"), run.failures
    log = run.attempts[0][int(run.failures[0].split()[0][-1])].log_path.read_text()
    assert "error: --hidden_units=a,b must be integers" in log
