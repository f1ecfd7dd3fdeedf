"""k8s/ and `mllaunch k8s`: every overlay builds with kustomize, validates strictly against the
Kubernetes 1.32 schemas (and the TFJob/JobSet CRD schemas), with and without a Kueue queue, and is
wired the way no schema checks: names, selectors, counts, ports, failure handling, queue labels."""

import copy
import json
import re
import subprocess

import jsonschema
import kubernetes_validate
import pytest
import yaml
from manifests import (
    BIN,
    JOBSET_OVERLAYS,
    KUBECTL,
    MODEL_DIR,
    REPO,
    WORKERS,
    env_of,
    job_failure,
    jobset_action,
    only,
    render,
    requires_kubectl,
    trainer,
    workload,
)

from launch import k8s, pod

CRD_DIR = REPO.parent / "shared" / "k8s-crds"
KUBERNETES_VERSION = "1.32.0"
CRD_FILES = {"JobSet": "jobset.x-k8s.io_jobsets.yaml", "TFJob": "kubeflow.org_tfjobs.yaml"}

pytestmark = requires_kubectl


def test_the_documented_overlays_exist():
    assert set(k8s.overlays()) == set(WORKERS)


# -- Schemas ---------------------------------------------------------------------------------------


def _strict(schema):
    """The CRD schema with unknown fields rejected, as the API server's strict field validation does."""
    schema = copy.deepcopy(schema)
    stack = [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if "properties" in node and "additionalProperties" not in node:
                if not node.get("x-kubernetes-preserve-unknown-fields"):
                    node["additionalProperties"] = False
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return schema


def crd_validator(kind):
    path = CRD_DIR / CRD_FILES[kind]
    if not path.exists():
        pytest.skip(f"{path} is absent: the {kind} CRD schema lives in the shared folder beside the repo")
    crd = yaml.safe_load(path.read_text())
    (version,) = [v for v in crd["spec"]["versions"] if v.get("storage")]
    return f"{crd['spec']['group']}/{version['name']}", jsonschema.Draft7Validator(
        _strict(version["schema"]["openAPIV3Schema"])
    )


@pytest.mark.e2e
@pytest.mark.parametrize("overlay", sorted(WORKERS))
@pytest.mark.parametrize("source", ["kubectl kustomize", "mllaunch k8s render", "mllaunch k8s render --queue"])
def test_overlay_validates_strictly_against_kubernetes_1_32(overlay, source, tmp_path):
    if source == "kubectl kustomize":
        built = subprocess.run([KUBECTL, "kustomize", REPO / "k8s" / "overlays" / overlay], capture_output=True)
        assert built.returncode == 0, built.stderr.decode()
        text = built.stdout.decode()
    else:
        queue = "team-a.gpu" if source.endswith("--queue") else ""
        text = yaml.safe_dump_all(render(overlay, flags=[MODEL_DIR, "--train_steps=100"], queue=queue))
    (tmp_path / "manifests.yaml").write_text(text)
    result = subprocess.run(
        [
            BIN / "kubernetes-validate",
            "--strict",
            "--kubernetes-version",
            KUBERNETES_VERSION,
            tmp_path / "manifests.yaml",
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0 and "ERROR" not in result.stdout, result.stdout
    docs = [d for d in yaml.safe_load_all(text) if d]
    passed = re.findall(r"passed for resource (\S+)", result.stdout)
    assert sorted(passed) == sorted(
        f"{d['kind'].lower()}/{d['metadata']['name']}" for d in docs if d["kind"] not in CRD_FILES
    )


@pytest.mark.parametrize("queue", ["", "team-a"])
@pytest.mark.parametrize(
    "overlay, kind", [("multi-worker-gpu-jobset", "JobSet"), ("tpu", "JobSet"), ("tfjob", "TFJob")]
)
def test_custom_resource_validates_against_its_crd_schema(overlay, kind, queue):
    api_version, validator = crd_validator(kind)
    resource = only(render(overlay, queue=queue), kind)
    assert resource["apiVersion"] == api_version
    errors = [f"{'.'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(resource)]
    assert not errors, errors
    typo = copy.deepcopy(resource)
    typo["spec"]["runPolicyy" if kind == "TFJob" else "failurePolicyy"] = {}
    assert list(validator.iter_errors(typo)), "the strict CRD schema must reject unknown fields"
    # What the CRD embeds must also be valid Kubernetes 1.32 (the CRDs may embed newer fields).
    for template in k8s.pod_templates(resource):
        pod_doc = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"}, "spec": template["spec"]}
        kubernetes_validate.validate(pod_doc, KUBERNETES_VERSION, strict=True)
    for replicated_job in resource["spec"].get("replicatedJobs", []):
        job = {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": "x"},
            "spec": replicated_job["template"]["spec"],
        }
        kubernetes_validate.validate(job, KUBERNETES_VERSION, strict=True)


# -- Wiring no schema checks -----------------------------------------------------------------------


def _pod_env(container, job_name, index):
    """The env a pod of `job_name` gets: literal values, the downward-API job name, the index."""
    env = {"JOB_COMPLETION_INDEX": str(index)}
    for name, entry in env_of(container).items():
        if "value" in entry:
            env[name] = entry["value"]
        else:
            assert entry["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.labels['batch.kubernetes.io/job-name']"
            env[name] = job_name
    return env


@pytest.mark.parametrize("overlay", ["single-gpu", "multi-worker-gpu", "multi-worker-gpu-jobset", "tpu"])
def test_service_names_and_selects_the_workers_and_tf_config_agrees(overlay):
    docs = render(overlay)
    service, work = only(docs, "Service"), workload(docs)
    template = next(k8s.pod_templates(work))
    container = k8s.trainer_container(template)
    name = service["metadata"]["name"]
    assert name.startswith("exp1-")  # The render's name prefix reached every reference below.
    assert service["spec"]["clusterIP"] == "None" and service["spec"]["publishNotReadyAddresses"] is True
    assert service["spec"]["selector"].items() <= template["metadata"]["labels"].items()
    assert service["spec"]["selector"]["app.kubernetes.io/instance"] == "exp1-mltrain"
    if work["kind"] == "Job":
        assert template["spec"]["subdomain"] == name
        counts, job_name = [work["spec"]["completions"], work["spec"]["parallelism"]], work["metadata"]["name"]
    else:  # JobSet: it sets the pods' subdomain from spec.network; child Job i is <jobset>-<replicatedJob>-<i>.
        assert work["spec"]["network"] == {
            "enableDNSHostnames": True,
            "subdomain": name,
            "publishNotReadyAddresses": True,
        }
        (replicated_job,) = work["spec"]["replicatedJobs"]
        job_spec = replicated_job["template"]["spec"]
        counts = [job_spec["completions"], job_spec["parallelism"]]
        job_name = f"{work['metadata']['name']}-{replicated_job['name']}-0"
    assert env_of(container)["MLTRAIN_SERVICE"]["value"] == name
    workers = WORKERS[overlay]
    assert counts == [workers, workers] and env_of(container)["MLTRAIN_WORKERS"]["value"] == str(workers)

    # Ports: Service port -> named targetPort -> containerPort -> MLTRAIN_PORT -> TF_CONFIG.
    (service_port,) = service["spec"]["ports"]
    (container_port,) = [p for p in container["ports"] if p["name"] == service_port["targetPort"]]
    port = env_of(container)["MLTRAIN_PORT"]["value"]
    assert service_port["port"] == container_port["containerPort"] == int(port)
    for index in range(workers):
        config = pod.tf_config_from_env(_pod_env(container, job_name, index))
        if workers == 1:
            assert config is None  # One process: no cluster, no TF_CONFIG.
            continue
        spec = json.loads(config)
        assert spec["task"]["index"] == index
        assert spec["cluster"]["worker"] == [f"{job_name}-{i}.{name}:{port}" for i in range(workers)]


@pytest.mark.e2e
def test_tpu_overlay_names_the_tpu_image():
    # Plain kustomize users set `images: [{name: mltrain-tpu, ...}]`: the name says which image it is.
    built = subprocess.run([KUBECTL, "kustomize", REPO / "k8s" / "overlays" / "tpu"], capture_output=True, text=True)
    docs = [d for d in yaml.safe_load_all(built.stdout) if d]
    assert k8s.trainer_container(next(k8s.pod_templates(workload(docs))))["image"] == "mltrain-tpu"
    for overlay in sorted(set(WORKERS) - {"tpu"}):
        built = subprocess.run(
            [KUBECTL, "kustomize", REPO / "k8s" / "overlays" / overlay], capture_output=True, text=True
        )
        docs = [d for d in yaml.safe_load_all(built.stdout) if d]
        assert k8s.trainer_container(next(k8s.pod_templates(workload(docs))))["image"] == "mltrain"


def test_tfjob_leaves_the_cluster_to_the_operator():
    docs = render("tfjob")
    tfjob = only(docs, "TFJob")
    assert not [d for d in docs if d["kind"] in ("Service", "Job")]
    assert list(tfjob["spec"]["tfReplicaSpecs"]) == ["Worker"]
    assert tfjob["spec"]["tfReplicaSpecs"]["Worker"]["replicas"] == WORKERS["tfjob"]
    container = trainer(docs)
    assert container["name"] == "tensorflow" and not [e for e in env_of(container) if e.startswith("MLTRAIN_")]
    assert container["ports"] == [{"name": "tfjob-port", "containerPort": 2222, "protocol": "TCP"}]


@pytest.mark.parametrize("overlay", sorted(WORKERS))
def test_every_name_reference_follows_the_prefix(overlay):
    docs = render(overlay)
    names = {(d["kind"], d["metadata"]["name"]) for d in docs}
    template = next(k8s.pod_templates(workload(docs)))
    assert ("ServiceAccount", template["spec"]["serviceAccountName"]) in names
    for volume in template["spec"]["volumes"]:
        if "persistentVolumeClaim" in volume:
            assert ("PersistentVolumeClaim", volume["persistentVolumeClaim"]["claimName"]) in names
    assert all(name.startswith("exp1-") for _, name in names)


@pytest.mark.parametrize("overlay", ["single-gpu", "multi-worker-gpu"])
def test_job_never_retries_a_user_error_and_restarts_after_preemption(overlay):
    docs = render(overlay)
    job = only(docs, "Job")
    rules = job["spec"]["podFailurePolicy"]["rules"]
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"  # podFailurePolicy needs it.
    assert job_failure(rules, "trainer", exit_code=1)[0] == "FailJob"
    assert job_failure(rules, "trainer", exit_code=75)[0] == "Ignore"
    assert job_failure(rules, "trainer", condition="DisruptionTarget")[0] == "Ignore"
    assert job_failure(rules, "trainer", exit_code=2)[0] == "Count"
    # Each whole-group restart can fail every worker once.
    assert job["spec"]["backoffLimit"] == WORKERS[overlay] * 3


@pytest.mark.parametrize("overlay", JOBSET_OVERLAYS)
def test_jobset_restarts_the_whole_group_except_after_a_user_error(overlay):
    jobset = only(render(overlay, max_restarts=5), "JobSet")
    job_spec = jobset["spec"]["replicatedJobs"][0]["template"]["spec"]
    assert job_spec["backoffLimit"] == 0 and job_spec["template"]["spec"]["restartPolicy"] == "Never"
    policy = jobset["spec"]["failurePolicy"]
    assert policy["maxRestarts"] == 5  # --max-restarts
    # The old group is gone (its SIGTERM saves done) before the new one starts.
    assert policy["restartStrategy"] == "BlockingRecreate"
    assert jobset_action(jobset, exit_code=1) == "FailJobSet"
    assert jobset_action(jobset, exit_code=75) == "RestartJobSetAndIgnoreMaxRestarts"
    assert jobset_action(jobset, condition="DisruptionTarget") == "RestartJobSetAndIgnoreMaxRestarts"
    assert jobset_action(jobset, exit_code=2) == "RestartJobSet"
    assert jobset_action(jobset, exit_code=137) == "RestartJobSet"  # SIGKILLed (OOM, node lost).


def test_tfjob_restarts_failed_workers_within_a_budget():
    tfjob = only(render("tfjob"), "TFJob")
    assert tfjob["spec"]["tfReplicaSpecs"]["Worker"]["restartPolicy"] == "OnFailure"
    assert tfjob["spec"]["runPolicy"]["backoffLimit"] == WORKERS["tfjob"] * 3


@pytest.mark.parametrize("overlay", sorted(WORKERS))
def test_model_dir_is_on_a_claim_every_worker_can_mount(overlay):
    docs = render(overlay)
    template = next(k8s.pod_templates(workload(docs)))
    claim = only(docs, "PersistentVolumeClaim")
    (volume,) = [v for v in template["spec"]["volumes"] if "persistentVolumeClaim" in v]
    (mount,) = [m for m in k8s.trainer_container(template)["volumeMounts"] if m["name"] == volume["name"]]
    assert k8s.flag_value(k8s.trainer_container(template)["args"], "model_dir").startswith(mount["mountPath"] + "/")
    expected = ["ReadWriteOnce"] if overlay in ("single-gpu", "tpu") else ["ReadWriteMany"]
    assert claim["spec"]["accessModes"] == expected


# -- Kueue ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("overlay", sorted(WORKERS))
def test_queue_labels_the_workload_and_creates_it_suspended(overlay):
    docs = render(overlay, queue="team-a")
    work = workload(docs)
    assert work["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-a"
    # Kueue admits the workload that carries the label, and unsuspends it when it fits the quota.
    suspend = work["spec"]["runPolicy"]["suspend"] if work["kind"] == "TFJob" else work["spec"]["suspend"]
    assert suspend is True
    # Only the workload: the Service, claim and ServiceAccount are not Kueue's, nor are the pods.
    for doc in docs:
        if doc is not work:
            assert "kueue.x-k8s.io/queue-name" not in doc["metadata"].get("labels", {})
    for template in k8s.pod_templates(work):
        assert "kueue.x-k8s.io/queue-name" not in template["metadata"].get("labels", {})
    # The rest is the render without a queue.
    plain = workload(render(overlay))
    for doc in (work, plain):
        doc["metadata"]["labels"].pop("kueue.x-k8s.io/queue-name", None)
        (doc["spec"].get("runPolicy", doc["spec"]) if doc["kind"] == "TFJob" else doc["spec"]).pop("suspend", None)
    assert work == plain


@pytest.mark.parametrize("overlay", sorted(WORKERS))
def test_without_a_queue_nothing_is_queued_or_suspended(overlay):
    work = workload(render(overlay))
    assert "kueue.x-k8s.io/queue-name" not in work["metadata"].get("labels", {})
    assert "suspend" not in work["spec"] and "suspend" not in work["spec"].get("runPolicy", {})
