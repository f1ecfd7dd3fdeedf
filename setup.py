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
    ],
    extras_require={
        # Optional: TF 2.21's TPUClusterResolver(tpu="local") works without it.
        "tpu": ["cloud-tpu-client==0.10"],
        "test": ["pytest>=8", "scikit-learn>=1.5", "ruff>=0.6"],
    },
    entry_points={"console_scripts": ["mltrain=trainer.main:run", "mllaunch=launch.main:run"]},
)
