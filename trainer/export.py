"""`--mode=export`: a SavedModel that takes the model's raw inputs and returns probabilities
and labels at the tuned thresholds, with the label names and thresholds inside it.

Raw inputs: `features` (float32 [batch, F]) for numeric models; `text` (string [batch]) for
text models trained on text, tokenised in the graph with the run's vocabulary; `tokens`
(int32 [batch, T]) for text models trained on token ids; `image` (string [batch]: encoded
JPEG/PNG/GIF/BMP files) for image models, decoded and resized in the graph as training data
is. `multi_input` takes both of its inputs. Outputs: `probabilities` (float32
[batch, L]), `logits` (float32 [batch, L], the scores before the sigmoid) and `labels` (int32
[batch, L], 1 where probability >= the label's threshold).
`label_names` and `thresholds` are also served as signatures of their own, and written as
assets (`label_names.txt`, `thresholds.json`).
"""

import json
import os
from typing import Dict, Optional, Sequence

import numpy as np
import tensorflow as tf
from absl import logging

from trainer import paths
from trainer.data import InputSpec, text, tfrecord


class ServingModule(tf.Module):
    """What the SavedModel holds: the model, the tokenizer, label names and thresholds."""

    def __init__(self, model, tokenizer: Optional[tf.Module], label_names: Sequence[str], thresholds):
        super().__init__(name="serving")
        self.model = model
        self.tokenizer = tokenizer
        self.label_names = tf.constant(list(label_names), tf.string)
        self.thresholds = tf.constant(np.asarray(thresholds, np.float32))

    def score(self, inputs: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
        inputs = dict(inputs)
        if self.tokenizer is not None:
            inputs["tokens"] = self.tokenizer(inputs.pop("text"))
        if "image" in inputs:
            size = self.model.input["image"].shape[1]
            inputs["image"] = tf.map_fn(
                lambda encoded: tfrecord.decode_image(encoded, size),
                inputs["image"],
                fn_output_signature=tf.TensorSpec([size, size, 3], tf.float32),
            )
        logits = tf.cast(self.model(inputs, training=False), tf.float32)
        probabilities = tf.sigmoid(logits)
        return {
            "probabilities": probabilities,
            "logits": logits,
            "labels": tf.cast(probabilities >= self.thresholds, tf.int32),
        }


def raw_input_specs(spec: InputSpec, has_tokenizer: bool = False) -> Dict[str, tf.TensorSpec]:
    """The serving inputs: raw text instead of token ids when the run has a vocabulary (or, with
    `has_tokenizer`, a tokenizer of its own: hub_text's preset)."""
    specs = {}
    for name, feature in spec.feature_specs.items():
        if name == "tokens" and (spec.vocabulary or has_tokenizer):
            specs["text"] = tf.TensorSpec([None], tf.string, name="text")
        elif name == "image":
            specs["image"] = tf.TensorSpec([None], tf.string, name="image")
        else:
            specs[name] = tf.TensorSpec([None, *feature.shape], feature.dtype, name=name)
    return specs


def export(model, spec: InputSpec, input_names: Sequence[str], thresholds, sequence_length: int, bigrams: bool,
           model_dir: str, tokenizer=None) -> str:  # fmt: skip
    """Writes model_dir/export (replacing an older export atomically) and returns its path.

    `tokenizer` (a tf.Module: strings [B] -> int32 [B, T]) replaces the run's vocabulary in the
    graph: hub_text's preset tokenizer, whose TensorFlow Text ops need `import tensorflow_text`
    before the SavedModel is loaded."""
    specs = raw_input_specs(spec, has_tokenizer=tokenizer is not None)
    specs = {name: s for name, s in specs.items() if name in input_names or name == "text"}
    if tokenizer is None and "text" in specs:
        tokenizer = text.Tokenizer(spec.vocabulary, sequence_length, bigrams)
    module = ServingModule(model, tokenizer, spec.label_names, thresholds)

    @tf.function
    def serve(**inputs):
        return module.score(inputs)

    @tf.function(input_signature=[])
    def label_names():
        return {"label_names": module.label_names, "thresholds": module.thresholds}

    # Written beside its destination, then put in its place: a crash never leaves half an export.
    # (On object storage the final rename is a copy: there a crash can leave export.tmp behind.)
    destination = paths.export(model_dir)
    staging = destination + ".tmp"
    if tf.io.gfile.exists(staging):
        tf.io.gfile.rmtree(staging)
    signatures = {"serving_default": serve.get_concrete_function(**specs), "label_names": label_names}
    tf.saved_model.save(module, staging, signatures=signatures)
    assets = os.path.join(staging, "assets")
    paths.atomic_write(os.path.join(assets, "label_names.txt"), "".join(f"{name}\n" for name in spec.label_names))
    thresholds_json = json.dumps({name: float(t) for name, t in zip(spec.label_names, thresholds)}, indent=2)
    paths.atomic_write(os.path.join(assets, "thresholds.json"), thresholds_json)
    if tf.io.gfile.exists(destination):
        tf.io.gfile.rmtree(destination)
    tf.io.gfile.rename(staging, destination)
    logging.info("Exported SavedModel to %s (inputs: %s)", destination, ", ".join(sorted(specs)))
    return destination
