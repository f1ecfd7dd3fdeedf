"""`--strategy=tpu` where no TPU can be reached: one line naming the TPU and the fix, exit 1.

No TPU is reachable from CI, so these tests cover what can be checked without one: how the trainer
resolves `--tpu` and what it says when that fails. That a TPU slice trains is not claimed here
(docs/kubernetes.md, "What only real hardware proves").
"""

import socket

import pytest
from helpers import TINY, error_line, run_trainer

pytestmark = pytest.mark.e2e  # Every test here starts the trainer or another program.


def closed_loopback_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # Closed when the socket is: connecting to it is refused.


def test_unreachable_tpu_name_is_one_line_naming_the_tpu_and_the_fix(tmp_path):
    # A TPU name is looked up through the GCE metadata server; point it at a closed loopback port
    # (what any machine off Google Cloud gets) so the test never leaves this machine.
    env = {"GCE_METADATA_HOST": f"127.0.0.1:{closed_loopback_port()}"}
    model_dir = tmp_path / "run"
    result = run_trainer(
        ["--strategy=tpu", "--tpu=some-name", f"--model_dir={model_dir}", "--train_steps=1", *TINY], env=env
    )
    assert result.returncode == 1, result.stderr[-3000:]
    line = error_line(result)
    assert line.startswith("error: --tpu=some-name: no TPU could be reached (URLError: "), line
    assert "use --tpu=local" in line and "GCE metadata server" in line


def test_tpu_local_without_a_tpu_is_one_line_too(tmp_path):
    # `local` skips the lookup; TensorFlow then finds no TPU device on this machine.
    result = run_trainer(["--tpu=local", f"--model_dir={tmp_path / 'run'}", "--train_steps=1", *TINY])
    assert result.returncode == 1, result.stderr[-3000:]
    line = error_line(result)
    assert line.startswith("error: --tpu=local: no TPU could be reached (NotFoundError: TPUs not found"), line
    assert "run on a TPU VM or GKE TPU node with tensorflow-tpu and libtpu (the Dockerfile.tpu image)" in line
