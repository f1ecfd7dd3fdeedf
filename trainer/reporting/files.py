"""The files an evaluation or prediction leaves: metrics JSON/CSV, thresholds.json, predictions.jsonl."""

import csv
import io
import json
import math
from typing import Dict, Iterable, List

import numpy as np
import tensorflow as tf

from trainer import metrics, paths
from trainer.reporting.table import TABLE_COLUMNS


def _json_safe(value):
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value


def write_metrics(model_dir: str, stem: str, summary: Dict) -> str:
    """Writes metrics/<stem>.json and .csv (the per-label table); returns the JSON path."""
    path = paths.atomic_write(paths.metrics(model_dir, stem, "json"), json.dumps(_json_safe(summary), indent=2) + "\n")
    rows = io.StringIO()
    writer = csv.writer(rows)
    writer.writerow(("label", "support") + TABLE_COLUMNS)
    for name, row in summary["labels"].items():
        writer.writerow([name, row["support"]] + ["" if row[c] is None else f"{row[c]:.6f}" for c in TABLE_COLUMNS])
    paths.atomic_write(paths.metrics(model_dir, stem, "csv"), rows.getvalue())
    return path


def write_thresholds(directory: str, label_names: List[str], thresholds: np.ndarray) -> str:
    """`directory`/thresholds.json (the model dir, or checkpoints/best/)."""
    text = json.dumps({name: float(t) for name, t in zip(label_names, thresholds)}, indent=2)
    return paths.atomic_write(paths.thresholds(directory), text + "\n")


def read_thresholds(directory: str, label_names: List[str]) -> np.ndarray:
    """Thresholds saved in `directory`, in label order; 0.5 for every label when none were tuned yet."""
    path = paths.thresholds(directory)
    if not tf.io.gfile.exists(path):
        return np.full(len(label_names), 0.5, np.float32)
    saved = json.loads(paths.read_text(path))
    return np.array([saved.get(name, 0.5) for name in label_names], np.float32)


def top_k_ids(logits: np.ndarray, k: int) -> List[np.ndarray]:
    """Per row of `logits` [B, L], the ids of its k highest logits, best first, ties: lower id first
    (as a stable sort of every label would give, NaN last). A partition finds each row's k-th value
    first and only the candidates at or above it are sorted: at 100,000 labels a full sort of a
    batch took seconds."""
    k = min(k, logits.shape[1])
    kth = -np.partition(-logits, k - 1, axis=1)[:, k - 1]
    rows = []
    for row, cut in zip(logits, kth):
        if np.isnan(cut):  # Fewer than k numbers in the row: the NaNs fill the end, as in a full sort.
            rows.append(np.argsort(-row, kind="stable")[:k])
            continue
        candidates = np.flatnonzero(row >= cut)  # In id order, so the stable sort keeps lower ids first.
        rows.append(candidates[np.argsort(-row[candidates], kind="stable")][:k])
    return rows


def prediction_rows(logits: np.ndarray, names: np.ndarray, thresholds: np.ndarray, top_k: int = 0) -> List[Dict]:
    """predictions.jsonl rows for a batch of float32 logits [B, L]: labels at `thresholds`, then the
    dense probabilities and logits, or (top_k > 0) the top_k [name, probability] pairs, best first
    (by logit; ties: lower label id first)."""
    logits = np.asarray(logits, np.float32)
    probabilities = metrics.curves.sigmoid(logits).astype(np.float32)
    rows = []
    if top_k:
        # By logit: probabilities of saturated scores tie at 1.0 in float32, their logits do not.
        best = top_k_ids(logits, top_k)
        for row, top in zip(probabilities, best):
            rows.append(
                {
                    "labels": names[row >= thresholds].tolist(),
                    "top_k": [[str(names[j]), float(row[j])] for j in top],
                }
            )
        return rows
    # float32 -> float64 is exact and json writes float64 in full: the float32 values round-trip.
    for row, row_logits in zip(probabilities, logits):
        rows.append(
            {
                "probabilities": row.astype(np.float64).tolist(),
                "logits": row_logits.astype(np.float64).tolist(),
                "labels": names[row >= thresholds].tolist(),
            }
        )
    return rows


def write_predictions(
    path: str, label_names: List[str], thresholds: np.ndarray, batches: Iterable[np.ndarray], top_k: int = 0
) -> int:
    """predictions.jsonl from batches of logits [B, L] in input order, written as they come (memory
    stays flat) and put in place when complete; returns the number of rows."""
    names = np.array(label_names)
    count = 0
    with paths.atomic_file(path) as out:
        for logits in batches:
            for row in prediction_rows(logits, names, thresholds, top_k):
                out.write(json.dumps(row) + "\n")
            count += len(logits)
    return count
