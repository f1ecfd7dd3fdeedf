"""What an end-of-run evaluation leaves for people: TensorBoard PR curves and the PNG report; files
(metrics, predictions) replaced only when complete."""

import glob
import os

import pytest
import tensorflow as tf
from helpers import TINY, check_ok, run_trainer

from trainer import paths


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    model_dir = str(tmp_path_factory.mktemp("report"))
    check_ok(run_trainer(TINY + [f"--model_dir={model_dir}", "--train_steps=20", "--eval_every_steps=10"]))
    return model_dir


@pytest.mark.e2e
def test_tensorboard_holds_a_pr_curve_per_label_at_each_evaluation(run_dir):
    curves = {}  # tag -> steps
    for path in glob.glob(os.path.join(run_dir, "tensorboard", "eval", "events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                if value.metadata.plugin_data.plugin_name == "pr_curves":
                    curves.setdefault(value.tag, set()).add(event.step)
                    data = tf.make_ndarray(value.tensor)
                    assert data.shape == (6, 201)  # TP, FP, TN, FN, precision, recall at 201 thresholds.
    assert set(curves) == {f"pr_curve/label_{j:02d}/pr_curves" for j in range(8)}, sorted(curves)
    assert all(steps == {10, 20} for steps in curves.values()), curves


@pytest.mark.e2e
def test_png_report_is_written_at_the_end(run_dir):
    path = os.path.join(run_dir, "report", "eval-20.png")
    with open(path, "rb") as f:
        content = f.read()
    assert content[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(content) > 10_000


def test_a_file_written_in_place_replaces_the_old_one_only_when_complete(tmp_path):
    path = str(tmp_path / "out" / "predictions.jsonl")
    with paths.atomic_file(path) as f:
        f.write("old\n")
    with pytest.raises(RuntimeError):
        with paths.atomic_file(path) as f:
            f.write("half of the new\n")
            raise RuntimeError("stopped half-way")
    assert open(path).read() == "old\n"
    assert os.listdir(tmp_path / "out") == ["predictions.jsonl"]  # The partial file is gone.
    with paths.atomic_file(path) as f:
        f.write("new\n")
    assert open(path).read() == "new\n"
