"""`mllaunch` arguments (launch/main.py): a bad one is one `error:` line and exit 1, never argparse's
usage text and exit 2 (which an orchestrator reads as a failed run worth retrying)."""

import pytest

from launch import main

BAD_ARGUMENTS = [
    (["local", "--workers", "abc"], "argument --workers: invalid int value: 'abc'; see `mllaunch local --help`."),
    (["k8s", "--workers", "abc"], "argument --workers: invalid int value: 'abc'; see `mllaunch k8s --help`."),
    (["k8s", "render", "--overlay", "tpu"], "the following arguments are required: --image"),
    ([], "mllaunch needs a command first, one of local, k8s, pod, not nothing"),
    # argparse alone would blame the '2' ("invalid choice: '2'").
    (["--wrkers", "2"], "mllaunch needs a command first, one of local, k8s, pod, not '--wrkers'"),
    (["local", "--wrkers", "2"], "mllaunch local has no option --wrkers; see `mllaunch local --help`."),
    # The trainer's flags without the `--` before them.
    (
        ["local", "--workers", "1", "--model_dir=x"],
        "--model_dir=x: the trainer's flags follow `--`, e.g. `mllaunch local --workers 2 -- --model_dir=x`.",
    ),
    (
        ["local", "--model_dir", "x", "--train_steps=3"],
        "e.g. `mllaunch local --workers 2 -- --model_dir x --train_steps=3`.",
    ),
    (
        ["k8s", "render", "--overlay", "tpu", "--image", "reg.example/mltrain:1", "--flagfile=run.flags"],
        "the trainer's flags follow `--`, e.g. `mllaunch k8s apply --overlay OVERLAY --image IMAGE -- --flagfile=",
    ),
    (
        ["local", "--workers", "1", "--restart-on-failure", "-1", "--", "--model_dir=x"],
        "--restart-on-failure must be 0 or more (whole-group restarts after a failure), not -1.",
    ),
]


@pytest.mark.parametrize("argv, message", BAD_ARGUMENTS)
def test_bad_arguments_are_one_error_line_and_exit_1(argv, message, capsys):
    with pytest.raises(SystemExit) as exited:
        main.run(argv)
    stderr = capsys.readouterr().err
    assert exited.value.code == 1, stderr
    assert stderr.startswith("error: ") and stderr.count("\n") == 1, stderr
    assert message in stderr, stderr
