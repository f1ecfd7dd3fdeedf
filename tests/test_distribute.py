"""TF_CONFIG parsing and strategy choice: pure functions, no TensorFlow."""

import json

import pytest

from trainer.config import DistributeConfig
from trainer.distribute import Cluster, choose_strategy, cluster_from_env
from trainer.errors import UserError


def tf_config(cluster, task_type="worker", index=0):
    return json.dumps({"cluster": cluster, "task": {"type": task_type, "index": index}})


def test_no_tf_config_is_a_single_chief():
    cluster = cluster_from_env(None)
    assert cluster.num_workers == 1 and cluster.is_chief


def test_workers_only_worker_zero_is_chief():
    spec = {"worker": ["a:1", "b:1", "c:1"]}
    assert cluster_from_env(tf_config(spec, index=0)).is_chief
    second = cluster_from_env(tf_config(spec, index=2))
    assert (second.num_workers, second.worker_index, second.is_chief) == (3, 2, False)


def test_chief_task_comes_first_like_multi_worker_mirrored():
    spec = {"chief": ["c:1"], "worker": ["a:1", "b:1"]}
    assert cluster_from_env(tf_config(spec, "chief", 0)).worker_index == 0
    worker = cluster_from_env(tf_config(spec, "worker", 1))
    assert (worker.num_workers, worker.worker_index, worker.is_chief) == (3, 2, False)


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("{not json", "not valid JSON"),
        (json.dumps({"task": {"type": "worker", "index": 0}}), 'no "cluster"'),
        (json.dumps({"cluster": {"worker": ["a:1"]}}), 'no "task"'),
        (tf_config({"worker": ["a:1", "b:1"]}, index=2), "index 2 is out of range"),
        (tf_config({"worker": ["a:1"]}, task_type="chief"), 'task type "chief" is not in the cluster'),
        (tf_config({"worker": ["no-port"]}), "host:port"),
        (tf_config({"worker": ["a:1"], "ps": ["p:1"]}), "parameter servers"),
        (tf_config({"worker": ["a:1"], "evaluator": ["e:1"]}, "evaluator", 0), "does not train"),
    ],
)
def test_bad_tf_config_names_the_problem(text, fragment):
    with pytest.raises(UserError, match=fragment):
        cluster_from_env(text)


def test_auto_picks_by_tpu_then_workers_then_devices():
    two_workers = Cluster(num_workers=2)
    assert choose_strategy(DistributeConfig(tpu="local"), Cluster(), 0) == "tpu"
    assert choose_strategy(DistributeConfig(), two_workers, 8) == "multi_worker"
    assert choose_strategy(DistributeConfig(), Cluster(), 2) == "mirrored"
    assert choose_strategy(DistributeConfig(cpu_replicas=2), Cluster(), 0) == "mirrored"
    assert choose_strategy(DistributeConfig(), Cluster(), 1) == "default"
    assert choose_strategy(DistributeConfig(), Cluster(), 0) == "default"


def test_strategy_that_cannot_use_the_cluster_is_refused():
    with pytest.raises(UserError, match="--strategy=multi_worker"):
        choose_strategy(DistributeConfig(strategy="mirrored"), Cluster(num_workers=2), 0)
    with pytest.raises(UserError, match="needs --tpu"):
        choose_strategy(DistributeConfig(strategy="tpu"), Cluster(), 0)
    with pytest.raises(UserError, match="cpu_replicas"):
        choose_strategy(DistributeConfig(strategy="default", cpu_replicas=2), Cluster(), 0)
