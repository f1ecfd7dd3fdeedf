"""Errors that end a run, and the exit code each one maps to.

The exit codes are part of the user contract (README, "Exit codes"): orchestrators
restart on PREEMPTED, alert on TRAINING_FAILED, and never retry USER_ERROR.
"""

EXIT_OK = 0
EXIT_USER_ERROR = 1
EXIT_TRAINING_FAILED = 2
# EX_TEMPFAIL from sysexits.h: "try again later", which is what a preempted job wants.
EXIT_PREEMPTED = 75


class UserError(Exception):
    """Bad flags, data, or cluster config. The message names the problem and the fix."""


class TrainingFailed(Exception):
    """Training cannot continue (e.g. NaN loss). The message names the step."""


class Preempted(Exception):
    """The run was asked to stop (SIGTERM) and saved a checkpoint; restarting resumes it."""
