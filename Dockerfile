# The trainer image: `docker build -t REGISTRY/mltrain:TAG .` then `mllaunch k8s apply --image REGISTRY/mltrain:TAG ...`.
# The entrypoint derives TF_CONFIG from the pod's environment (launch/pod.py) and execs the trainer;
# a container's arguments are the trainer's flags.

# The newest TensorFlow setup.py accepts (tensorflow>=2.20,<2.22), CUDA included. For TPUs use
# Dockerfile.tpu. For fully reproducible builds pin the digest too: tensorflow/tensorflow:2.21.0-gpu@sha256:...
FROM tensorflow/tensorflow:2.21.0-gpu

# HOME under /tmp: the root filesystem is read-only in the pods, /tmp is their scratch volume.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_BREAK_SYSTEM_PACKAGES=1

# tini as PID 1: the kernel drops signals to a PID 1 that has no handler for them, so without it
# SIGTERM (preemption, kubectl delete) would wait out the whole grace period. tini forwards it.
# A fixed non-root uid/gid: the manifests run as 10001 (runAsNonRoot needs a numeric user).
RUN apt-get update \
    && apt-get install --yes --no-install-recommends tini \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --gid 10001 mltrain \
    && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin mltrain

WORKDIR /opt/mltrain
# Only what the package needs; .dockerignore keeps the rest (venv, runs, tests, secrets) out.
COPY setup.py ./
COPY trainer ./trainer
COPY launch ./launch
COPY configs ./configs
# The base image's TensorFlow already satisfies setup.py's tensorflow>=2.20,<2.22, so pip keeps it.
RUN python -m pip install --no-compile . \
    && python -c "import launch.pod, trainer.main"

USER 10001:10001
EXPOSE 2222
ENTRYPOINT ["/usr/bin/tini", "--", "python", "-m", "launch.pod", "--"]
