"""Security in every manifest and in the image: non-root, no privilege escalation, no capabilities,
RuntimeDefault seccomp, read-only root with writable volumes only where needed, resource requests
and limits, no API token, no secrets. The Dockerfile is checked statically (no Docker engine here)."""

import json
import re
import shlex

import pytest
from manifests import REPO, WORKERS, env_of, only, render, requires_kubectl, templates, trainer

pytestmark = requires_kubectl
WRITABLE_VOLUME_KINDS = ("emptyDir", "persistentVolumeClaim")


IMAGES = ("Dockerfile", "Dockerfile.tpu")


def dockerfile_instructions(name="Dockerfile"):
    """(INSTRUCTION, argument) pairs of a Dockerfile, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n\s*", " ", (REPO / name).read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def image_user(name="Dockerfile"):
    (user,) = [arg for instruction, arg in dockerfile_instructions(name) if instruction == "USER"]
    return user


@pytest.mark.parametrize("overlay", sorted(WORKERS))
def test_every_pod_runs_unprivileged(overlay):
    docs = render(overlay)
    for template in templates(docs):
        spec = template["spec"]
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        # The image's user is the manifests' user: runAsNonRoot checks a numeric uid.
        assert f"{spec['securityContext']['runAsUser']}:{spec['securityContext']['runAsGroup']}" == image_user()
        assert spec["automountServiceAccountToken"] is False and spec["enableServiceLinks"] is False
        for key in ("hostNetwork", "hostPID", "hostIPC"):
            assert not spec.get(key)
        for container in spec["containers"]:
            security = container["securityContext"]
            assert security["allowPrivilegeEscalation"] is False and not security.get("privileged")
            assert security["capabilities"] == {"drop": ["ALL"]}
            assert security["readOnlyRootFilesystem"] is True and security["runAsNonRoot"] is True
            assert security["seccompProfile"] == {"type": "RuntimeDefault"}
    assert only(docs, "ServiceAccount")["automountServiceAccountToken"] is False


@pytest.mark.parametrize("overlay", sorted(WORKERS))
def test_writable_paths_are_volumes_and_model_dir_is_the_only_lasting_one(overlay):
    for template in templates(render(overlay)):
        volumes = {v["name"]: v for v in template["spec"]["volumes"]}
        assert all(any(kind in v for kind in WRITABLE_VOLUME_KINDS) for v in volumes.values()), volumes
        mounts = {m["mountPath"]: volumes[m["name"]] for c in template["spec"]["containers"] for m in c["volumeMounts"]}
        assert "emptyDir" in mounts["/tmp"]  # HOME and scratch (Dockerfile: HOME=/tmp).
        assert [path for path, v in mounts.items() if "persistentVolumeClaim" in v] == ["/mnt/model"]


@pytest.mark.parametrize("overlay", sorted(WORKERS))
def test_resources_are_requested_and_limited(overlay):
    for template in templates(render(overlay)):
        for container in template["spec"]["containers"]:
            requests, limits = container["resources"]["requests"], container["resources"]["limits"]
            assert {"cpu", "memory"} <= requests.keys() and {"cpu", "memory"} <= limits.keys()
            # Extended resources (GPU, TPU) must be whole and equal in requests and limits.
            for name in [n for n in limits if "/" in n]:
                assert requests[name] == limits[name] and int(limits[name]) >= 1


def test_accelerators_are_requested_where_the_overlay_says():
    for overlay in ("single-gpu", "multi-worker-gpu", "multi-worker-gpu-jobset", "tfjob"):
        assert trainer(render(overlay))["resources"]["limits"]["nvidia.com/gpu"] == "1"
    template = templates(render("tpu"))[0]
    assert {"cloud.google.com/gke-tpu-accelerator", "cloud.google.com/gke-tpu-topology"} <= set(
        template["spec"]["nodeSelector"]
    )
    assert {"--strategy=tpu", "--tpu=local"} <= set(template["spec"]["containers"][0]["args"])
    assert int(trainer(render("tpu"))["resources"]["limits"]["google.com/tpu"]) >= 1


@pytest.mark.parametrize("overlay", sorted(WORKERS))
def test_no_secrets_anywhere(overlay):
    docs = render(overlay)
    assert not [d for d in docs if d["kind"] == "Secret"]
    text = json.dumps(docs)
    for reference in ('"secretKeyRef"', '"secretRef"', '"secret"', '"imagePullSecrets"'):
        assert reference not in text
    for container in [c for t in templates(docs) for c in t["spec"]["containers"]]:
        for name in env_of(container):
            assert not re.search(r"PASSWORD|TOKEN|SECRET|KEY", name), name


def test_termination_grace_outlasts_a_checkpoint_save():
    for overlay in sorted(WORKERS):
        for template in templates(render(overlay)):
            # On SIGTERM the trainer saves a checkpoint, then exits 75; the kubelet SIGKILLs after this.
            assert template["spec"]["terminationGracePeriodSeconds"] >= 60


# -- The image -------------------------------------------------------------------------------------


def setup_requirement(name):
    """The requirement on `name` in setup.py (the CPU/GPU one unless MLTRAIN_TENSORFLOW says otherwise)."""
    from packaging.requirements import Requirement

    (text,) = re.findall(rf'"({re.escape(name)}[=<>~][^"]*)"', (REPO / "setup.py").read_text())
    return Requirement(text)


def test_gpu_image_tensorflow_is_one_setup_py_accepts():
    (base,) = [arg for instruction, arg in dockerfile_instructions() if instruction == "FROM"]
    match = re.fullmatch(r"tensorflow/tensorflow:(2\.\d+\.\d+)-gpu(@sha256:[0-9a-f]{64})?", base)
    assert match, base
    assert setup_requirement("tensorflow").specifier.contains(match.group(1)), (base, setup_requirement("tensorflow"))


def test_tpu_image_is_python_with_tensorflow_tpu_and_no_gpu_base():
    instructions = dockerfile_instructions("Dockerfile.tpu")
    (base,) = [arg for instruction, arg in instructions if instruction == "FROM"]
    assert re.fullmatch(r"python:3\.\d+-slim-\w+(@sha256:[0-9a-f]{64})?", base), base  # No CUDA, no TF base.
    args = dict(arg.split("=", 1) for instruction, arg in instructions if instruction == "ARG")
    assert setup_requirement("tensorflow-tpu").specifier.contains(args["TENSORFLOW_TPU_VERSION"])
    assert re.fullmatch(r"0\.0\.\d+", args["LIBTPU_VERSION"])  # Pinned, not whatever is newest.
    env = dict(a.split("=", 1) for i, arg in instructions if i == "ENV" for a in shlex.split(arg))
    assert env["MLTRAIN_TENSORFLOW"] == "tensorflow-tpu"  # setup.py then never asks for `tensorflow`.
    runs = [arg for instruction, arg in instructions if instruction == "RUN"]
    assert any('"tensorflow-tpu==${TENSORFLOW_TPU_VERSION}" "libtpu==${LIBTPU_VERSION}"' in run for run in runs)
    # The build itself fails if pip left a conflict or installed the CPU/GPU distribution.
    assert any("pip check" in run and "! python -m pip show --quiet tensorflow " in run for run in runs)


@pytest.mark.parametrize("name", IMAGES)
def test_dockerfile_runs_non_root_and_enters_through_the_pod_entrypoint(name):
    instructions = dockerfile_instructions(name)
    user = image_user(name)
    assert user == image_user("Dockerfile")  # Both images run as the manifests' uid.
    assert user.split(":")[0] not in ("root", "0") and re.fullmatch(r"\d+:\d+", user)
    names = [instruction for instruction, _ in instructions]
    assert names.index("USER") > max(i for i, name in enumerate(names) if name == "RUN"), "USER must follow every RUN"
    (entrypoint,) = [json.loads(arg) for instruction, arg in instructions if instruction == "ENTRYPOINT"]
    assert entrypoint == ["/usr/bin/tini", "--", "python", "-m", "launch.pod", "--"]
    assert re.search(r"apt-get install .*\btini\b", " ".join(arg for i, arg in instructions if i == "RUN"))
    assert not [arg for instruction, arg in instructions if instruction == "CMD"]  # Args are the trainer's flags.
    known = {"FROM", "ENV", "ARG", "RUN", "WORKDIR", "COPY", "USER", "EXPOSE", "ENTRYPOINT"}
    assert set(names) <= known, set(names) - known  # A typo in an instruction fails here, not in docker build.
    env = dict(a.split("=", 1) for i, arg in instructions if i == "ENV" for a in shlex.split(arg))
    assert env["HOME"] == "/tmp"  # Writable under readOnlyRootFilesystem (an emptyDir).
    for instruction, arg in instructions:
        assert instruction not in ("ARG",) or not re.search(r"PASSWORD|TOKEN|SECRET|KEY", arg)
        if instruction == "COPY":
            for source in arg.split()[:-1]:
                assert (REPO / source).exists(), source
    assert not re.search(r"PASSWORD|TOKEN|SECRET|KEY", " ".join(env))


def test_dockerignore_admits_only_the_package_and_its_recipes():
    rules = [r.strip() for r in (REPO / ".dockerignore").read_text().splitlines() if r.strip() and r[0] != "#"]
    assert rules[0] == "*"  # Deny by default: .venv, .git, runs/, credentials never reach the image.
    assert {r[1:].rstrip("/") for r in rules if r.startswith("!")} == {"setup.py", "trainer", "launch", "configs"}
