"""`python -m launch` / `mllaunch`: run the trainer as a local multi-worker job (or on Kubernetes)."""

import argparse
import sys

from launch import local


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mllaunch", description=__doc__, fromfile_prefix_chars="@")
    commands = parser.add_subparsers(dest="command", required=True)
    loc = commands.add_parser("local", help="N worker processes on loopback, TF_CONFIG set for each.")
    loc.add_argument("--workers", type=int, default=2, help="Number of worker processes (default 2).")
    loc.add_argument(
        "--restart-on-failure", type=int, default=0, help="Restart the whole group up to K times after a failure."
    )
    loc.add_argument("trainer_args", nargs=argparse.REMAINDER, help="-- then the trainer's flags.")
    return parser


def run(argv=None) -> None:
    args = _parser().parse_args(argv)
    trainer_args = [a for a in args.trainer_args if a != "--"][: len(args.trainer_args)]
    if args.trainer_args and args.trainer_args[0] == "--":
        trainer_args = args.trainer_args[1:]
    if args.workers < 1:
        sys.stderr.write("error: --workers must be at least 1.\n")
        sys.exit(1)
    sys.exit(local.run_local(args.workers, trainer_args, args.restart_on_failure))
