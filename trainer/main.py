"""Entry point: absl flags -> validated Config -> run.run, with the documented exit codes.

Flags are read here and nowhere else; they are generated from the config dataclasses (trainer/flags.py).
"""

import os
import sys

from absl import app, flags, logging

from trainer import flags as config_flags
from trainer.errors import EXIT_PREEMPTED, EXIT_TRAINING_FAILED, EXIT_USER_ERROR, Preempted, TrainingFailed, UserError

FLAGS = flags.FlagValues()  # The trainer's own, so that other programs' flags (trainer.prepare) never clash.
config_flags.define_flags(FLAGS)


def _exit(code: int, message: str = "") -> None:
    """Ends the process at once, once everything is flushed (every file the run writes is closed by
    now). Python's own exit would first wait for tf.data's background threads to wind down, which
    took 1-10 s after the final checkpoint (bench/exit_delay.py)."""
    if message:
        sys.stderr.write(message + "\n")
    logging.flush()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _fail(code: int, message: str) -> None:
    _exit(code, f"error: {message}")


def _first_line(error: Exception) -> str:
    return (str(error).strip().splitlines() or [""])[0][:300]


def _describe_failure(error: Exception) -> str:
    first_line = _first_line(error)
    if type(error).__name__ in ("UnavailableError", "AbortedError", "DeadlineExceededError", "CancelledError"):
        return (
            f"lost contact with another worker ({type(error).__name__}: {first_line}); restart the whole "
            "job: it resumes from the last checkpoint."
        )
    return f"{type(error).__name__}: {first_line} (traceback above)."


def main(argv) -> None:
    if len(argv) > 1:
        _fail(EXIT_USER_ERROR, f"unexpected argument(s) {argv[1:]}; flags take the form --name=value.")
    try:
        config = config_flags.config_from_flags(FLAGS)
        from trainer import run as run_lib  # Imports TensorFlow: after the cheap checks, so bad flags fail fast.

        run_lib.run(config)
    except UserError as e:
        _fail(EXIT_USER_ERROR, str(e))
    except Preempted as e:
        _exit(EXIT_PREEMPTED, f"preempted: {e}")
    except TrainingFailed as e:
        _fail(EXIT_TRAINING_FAILED, str(e))
    except Exception as e:  # Not the user's input: exit 2 so an orchestrator may restart the job.
        # Except a file the trainer was given but may not read or write (tf.io.gfile's error or Python's).
        if isinstance(e, PermissionError) or type(e).__name__ == "PermissionDeniedError":
            _fail(
                EXIT_USER_ERROR,
                f"permission denied: {_first_line(e)}; give the trainer access to its data and --model_dir.",
            )
        logging.exception("Training failed")
        _fail(EXIT_TRAINING_FAILED, _describe_failure(e))
    logging.info("Done.")
    _exit(0)


def run() -> None:
    """Console script `mltrain` and `python -m trainer`; `mltrain prepare ...` runs trainer.prepare."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # Keep TensorFlow's C++ start-up chatter out of the log.
    if sys.argv[1:2] == ["prepare"]:
        from trainer import prepare

        prepare.run([f"{sys.argv[0]} prepare", *sys.argv[2:]])
        return
    try:
        config_flags.parse(FLAGS, sys.argv)  # Here first so a bad flag is one line and exit 1, not absl's usage dump.
    except UserError as e:
        sys.stderr.write(f"error: {e}\n")
        sys.exit(EXIT_USER_ERROR)
    app.run(main)
