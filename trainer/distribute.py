"""Distribution: the cluster from TF_CONFIG, the tf.distribute strategy, and the run's topology.

`cluster_from_env` and `choose_strategy` are pure (no TensorFlow) so every decision and
error message is testable without starting TensorFlow.
"""

import dataclasses
import json
import os
import subprocess
import sys
from typing import Dict, List, Optional

from trainer.config import DistributeConfig
from trainer.errors import UserError

WORKER_TASK_TYPES = ("chief", "worker")


@dataclasses.dataclass(frozen=True)
class Cluster:
    """Which task of which cluster this process is. A single process is a 1-task cluster."""

    num_workers: int = 1
    worker_index: int = 0  # Position among chief + workers; 0 is the chief.
    task_type: str = "worker"
    task_index: int = 0

    @property
    def is_chief(self) -> bool:
        return self.worker_index == 0


@dataclasses.dataclass(frozen=True)
class Topology:
    """Derived numbers every part of the run needs; printed at start-up."""

    num_replicas: int
    num_workers: int
    worker_index: int
    is_chief: bool
    global_batch_size: int

    @property
    def replicas_per_worker(self) -> int:
        return self.num_replicas // self.num_workers

    @property
    def per_replica_batch_size(self) -> int:
        return self.global_batch_size // self.num_replicas

    @property
    def per_worker_batch_size(self) -> int:
        return self.per_replica_batch_size * self.replicas_per_worker

    @property
    def first_replica(self) -> int:
        """Global id of this worker's first replica."""
        return self.worker_index * self.replicas_per_worker


def cluster_from_env(tf_config: Optional[str]) -> Cluster:
    """Parses and validates TF_CONFIG; raises UserError naming what is wrong and how to fix it."""
    if not tf_config:
        return Cluster()
    try:
        spec = json.loads(tf_config)
    except json.JSONDecodeError as e:
        raise UserError(
            f"TF_CONFIG is not valid JSON ({e.msg} at char {e.pos}); set it to "
            '{"cluster": {"worker": ["host:port", ...]}, "task": {"type": "worker", "index": 0}}.'
        )
    if not isinstance(spec, dict) or not isinstance(spec.get("cluster"), dict) or not spec["cluster"]:
        raise UserError('TF_CONFIG has no "cluster"; add {"cluster": {"worker": ["host:port", ...]}}.')
    cluster: Dict[str, List[str]] = spec["cluster"]
    for task_type, addresses in cluster.items():
        if not isinstance(addresses, list) or not all(isinstance(a, str) and ":" in a for a in addresses):
            raise UserError(
                f'TF_CONFIG cluster "{task_type}" must be a list of "host:port" strings, got {addresses!r}.'
            )
    task = spec.get("task")
    if not isinstance(task, dict) or "type" not in task or "index" not in task:
        raise UserError('TF_CONFIG has no "task"; add {"task": {"type": "worker", "index": N}}.')
    task_type, task_index = task["type"], task["index"]
    if task_type not in cluster:
        raise UserError(f'TF_CONFIG task type "{task_type}" is not in the cluster ({", ".join(cluster)}).')
    if not isinstance(task_index, int) or not 0 <= task_index < len(cluster[task_type]):
        raise UserError(
            f'TF_CONFIG task index {task_index!r} is out of range: cluster "{task_type}" has '
            f"{len(cluster[task_type])} task(s), so the index must be 0..{len(cluster[task_type]) - 1}."
        )
    if len(cluster.get("chief", [])) > 1:
        raise UserError(f"TF_CONFIG lists {len(cluster['chief'])} chiefs; a cluster has at most one.")
    unknown = set(cluster) - set(WORKER_TASK_TYPES) - {"evaluator", "ps"}
    if unknown:
        raise UserError(f"TF_CONFIG has unknown task types {sorted(unknown)}; use chief and worker.")
    if "ps" in cluster:
        raise UserError("TF_CONFIG lists parameter servers; this trainer uses all-reduce: use chief/worker only.")
    if task_type not in WORKER_TASK_TYPES:
        raise UserError(
            f'TF_CONFIG task type "{task_type}" does not train; run this trainer only on chief and worker tasks.'
        )
    num_chiefs = len(cluster.get("chief", []))
    worker_index = task_index if task_type == "chief" else num_chiefs + task_index
    return Cluster(
        num_workers=num_chiefs + len(cluster.get("worker", [])),
        worker_index=worker_index,
        task_type=task_type,
        task_index=task_index,
    )


def choose_strategy(config: DistributeConfig, cluster: Cluster, num_gpus: int) -> str:
    """Resolves `--strategy=auto` and checks that the requested strategy fits the machine and cluster."""
    name = config.strategy
    if name == "auto":
        if config.tpu:
            name = "tpu"
        elif cluster.num_workers > 1:
            name = "multi_worker"
        elif num_gpus > 1 or config.cpu_replicas > 1:
            name = "mirrored"
        else:
            name = "default"
    if name == "tpu" and not config.tpu:
        raise UserError("--strategy=tpu needs --tpu: the TPU name, or `local` on a TPU VM.")
    if name != "multi_worker" and cluster.num_workers > 1:
        raise UserError(
            f"TF_CONFIG names {cluster.num_workers} workers but --strategy={name}; "
            "use --strategy=multi_worker (or auto), or unset TF_CONFIG."
        )
    if name in ("default", "one_device") and config.cpu_replicas > 1:
        raise UserError(f"--cpu_replicas={config.cpu_replicas} needs --strategy=mirrored or multi_worker (got {name}).")
    return name


def _split_cpu(num_devices: int) -> None:
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    try:
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * num_devices)
    except RuntimeError:
        raise UserError(
            "--cpu_replicas must be applied before TensorFlow initialises; run the trainer as a "
            "fresh process (python -m trainer)."
        )


# Start-up waits for every worker with no deadline, inside a TensorFlow call that holds the
# GIL: one missing worker would hang the others forever and no Python thread could step in.
# A watchdog process prints the reason and kills this one (exit 137) instead.
_WATCHDOG = """
import os, sys, time
time.sleep(float(sys.argv[1]))
if os.getppid() == int(sys.argv[3]):
    sys.stderr.write(sys.argv[2] + "\\n")
    sys.stderr.flush()
    os.kill(int(sys.argv[3]), 9)
"""


def _start_watchdog(seconds: int, message: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", _WATCHDOG, str(seconds), message, str(os.getpid())])


def _multi_worker(config: DistributeConfig, cluster: Cluster, num_gpus: int):
    import tensorflow as tf

    # NCCL between GPUs; the ring implementation is the portable choice on CPUs.
    implementation = (
        tf.distribute.experimental.CommunicationImplementation.NCCL
        if num_gpus
        else tf.distribute.experimental.CommunicationImplementation.RING
    )
    options = tf.distribute.experimental.CommunicationOptions(
        implementation=implementation, timeout_seconds=config.collective_timeout_seconds
    )
    message = (
        f"error: worker {cluster.worker_index} could not reach all {cluster.num_workers} workers within "
        f"--collective_timeout_seconds={config.collective_timeout_seconds}; check that every worker is running "
        "and that the TF_CONFIG addresses resolve and are reachable."
    )
    watchdog = _start_watchdog(config.collective_timeout_seconds, message)
    try:
        return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
    finally:
        watchdog.kill()
        watchdog.wait()


def _tpu(config: DistributeConfig):
    import tensorflow as tf

    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=config.tpu)
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
    # A TPU name is looked up through the GCE metadata server and the Cloud TPU API (urllib, or
    # cloud-tpu-client when installed): off Google Cloud that is a URLError, elsewhere an HTTP or
    # google-auth error; TensorFlow adds ValueError, RuntimeError and OpError (no TPU devices).
    # Whatever the type, it means the same to the user: this TPU cannot be reached from here.
    except Exception as e:
        reason = (str(e).strip().splitlines() or [""])[0]
        reason = reason if len(reason) <= 160 else reason[:160] + "..."
        if config.tpu == "local":
            fix = (
                "this machine has no TPU TensorFlow can use: run on a TPU VM or GKE TPU node with tensorflow-tpu "
                "and libtpu (the Dockerfile.tpu image), or run without --tpu and --strategy=tpu"
            )
        else:
            fix = (
                "on a TPU VM or a GKE TPU node use --tpu=local; a TPU name is resolved through the GCE metadata "
                "server, so use it only on Google Cloud, with the name of a TPU in this project and zone"
            )
        raise UserError(f"--tpu={config.tpu}: no TPU could be reached ({type(e).__name__}: {reason}); {fix}.")
    return tf.distribute.TPUStrategy(resolver)


def make_strategy(config: DistributeConfig, cluster: Cluster):
    """Creates the strategy. Must run before any other TensorFlow call (it may split the CPU)."""
    import tensorflow as tf

    if config.cpu_replicas > 1:
        _split_cpu(config.cpu_replicas)
    num_gpus = len(tf.config.list_physical_devices("GPU"))
    name = choose_strategy(config, cluster, num_gpus)
    if name == "tpu":
        return _tpu(config)
    if name == "multi_worker":
        return _multi_worker(config, cluster, num_gpus)
    if name == "mirrored":
        devices = (
            [f"/gpu:{i}" for i in range(num_gpus)] if num_gpus else [f"/cpu:{i}" for i in range(config.cpu_replicas)]
        )
        return tf.distribute.MirroredStrategy(devices)
    if name == "one_device":
        return tf.distribute.OneDeviceStrategy("/gpu:0" if num_gpus else "/cpu:0")
    return tf.distribute.get_strategy()


def topology(strategy, cluster: Cluster, global_batch_size: int) -> Topology:
    """The run's derived numbers; raises UserError when the batch cannot be split evenly."""
    num_replicas = strategy.num_replicas_in_sync
    if global_batch_size % num_replicas:
        raise UserError(
            f"--global_batch_size={global_batch_size} does not divide by the {num_replicas} replicas; use a "
            f"multiple of {num_replicas}, e.g. {num_replicas * max(1, global_batch_size // num_replicas)}."
        )
    if num_replicas % cluster.num_workers:
        raise UserError(
            f"{num_replicas} replicas do not spread evenly over {cluster.num_workers} workers; "
            "give every worker the same number of devices."
        )
    return Topology(
        num_replicas=num_replicas,
        num_workers=cluster.num_workers,
        worker_index=cluster.worker_index,
        is_chief=cluster.is_chief,
        global_batch_size=global_batch_size,
    )


def make_replica_sum(strategy):
    """Returns replica_sum(values): `values` (a small float tensor, given by every worker) summed
    over every replica of every worker, as this worker sees it. One all-reduce per call; every
    worker must call it at the same point."""
    import tensorflow as tf

    @tf.function
    def replica_sum(local):
        def sum_in_replica():
            # The copy places the values on this replica's device, where the collective runs.
            return tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, tf.identity(local))

        return strategy.experimental_local_results(strategy.run(sum_in_replica))[0]

    return replica_sum
