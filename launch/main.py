"""`python -m launch` / `mllaunch`: run the trainer as a local multi-worker job, in a pod, or on Kubernetes."""

import argparse
import signal
import sys
from pathlib import Path
from typing import List

from launch import k8s, local, pod
from trainer.errors import EXIT_USER_ERROR, UserError

# What to run, with the trainer's flags after `--`, per command (the example in a misplaced-flag error).
EXAMPLES = {
    "local": "mllaunch local --workers 2 -- {flags}",
    "pod": "mllaunch pod -- {flags}",
    "k8s": "mllaunch k8s apply --overlay OVERLAY --image IMAGE -- {flags}",
}


class _Parser(argparse.ArgumentParser):
    """argparse whose errors are user errors: one `error:` line and exit 1, not usage text and exit 2
    (to an orchestrator, 2 means a failed run worth retrying). Subcommand parsers are of this class too."""

    def error(self, message: str):
        raise UserError(f"{message}; see `{self.prog} --help`.")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="mllaunch", description=__doc__, fromfile_prefix_chars="@")
    commands = parser.add_subparsers(dest="command", required=True)
    loc = commands.add_parser("local", help="N worker processes on loopback, TF_CONFIG set for each.")
    loc.add_argument("--workers", type=int, default=2, help="Number of worker processes (default 2).")
    loc.add_argument(
        "--restart-on-failure", type=int, default=0, help="Restart the whole group up to K times after a failure."
    )
    loc.add_argument("trainer_args", nargs=argparse.REMAINDER, help="-- then the trainer's flags.")
    in_pod = commands.add_parser(
        "pod", help="Container entrypoint: TF_CONFIG from the pod's environment (see launch/pod.py), then the trainer."
    )
    in_pod.add_argument("trainer_args", nargs=argparse.REMAINDER, help="-- then the trainer's flags.")
    kube = commands.add_parser("k8s", help="Render or apply the Kubernetes manifests in k8s/ for one run.")
    kube.add_argument("action", choices=("render", "apply"), help="render: print the manifests; apply: kubectl apply.")
    kube.add_argument("--overlay", required=True, help="A directory of k8s/overlays, e.g. multi-worker-gpu.")
    kube.add_argument("--workers", type=int, default=1, help="Worker pods (TPU: hosts of the slice; default 1).")
    kube.add_argument("--image", required=True, help="The trainer image built from the Dockerfile.")
    kube.add_argument(
        "--max-restarts", type=int, default=3, help="Whole-group restarts after failures before the run fails."
    )
    kube.add_argument(
        "--queue",
        default="",
        help="Kueue LocalQueue: labels the workload kueue.x-k8s.io/queue-name=QUEUE and creates it suspended.",
    )
    kube.add_argument("--name-prefix", default="", help="Prefix for every name, so runs can share a namespace.")
    kube.add_argument("--namespace", default="", help="Namespace to put everything in (default: kubectl's).")
    kube.add_argument(
        "--k8s-dir", type=Path, default=k8s.K8S_DIR, help="The kustomize tree (default: this checkout's)."
    )
    kube.add_argument("--kubectl", default="", help="kubectl to use (default: $KUBECTL, PATH, beside Python).")
    kube.epilog = "The trainer's flags follow `--`, e.g. `-- --train_steps=1000`."
    return parser


def _check_command(argv: List[str]) -> None:
    """The command must come first; otherwise argparse blames the next word (`--wrkers 2`: "invalid choice: '2'")."""
    first = argv[0] if argv else ""
    if first not in (*COMMANDS, "-h", "--help") and not first.startswith("@"):
        raise UserError(
            f"mllaunch needs a command first, one of {', '.join(COMMANDS)}, not {repr(first) if argv else 'nothing'}, "
            f"e.g. `{EXAMPLES['local'].format(flags='--model_dir=runs/two_workers')}`; see `mllaunch --help`."
        )


def _is_trainer_flag(argument: str) -> bool:
    # Imported only for a bad command line: running the launcher needs none of the trainer's flags (nor absl).
    from trainer.main import FLAGS as trainer_flags

    name = argument.split("=", 1)[0][2:]
    return argument.startswith("--") and (name in trainer_flags or name == "flagfile")


def _check_unknown(args: argparse.Namespace, unknown: List[str]) -> None:
    """Arguments no option of the command takes: most often the trainer's flags without `--` before them."""
    if not unknown:
        return
    listed = " ".join(unknown)
    if any(_is_trainer_flag(argument) for argument in unknown):
        # argparse gives a flag's separate value (`--model_dir x`) to the command's trailing arguments.
        example = EXAMPLES[args.command].format(flags=" ".join([*unknown, *getattr(args, "trainer_args", [])]))
        raise UserError(f"{listed}: the trainer's flags follow `--`, e.g. `{example}`.")
    raise UserError(f"mllaunch {args.command} has no option {listed}; see `mllaunch {args.command} --help`.")


def _local(args, trainer_args) -> int:
    if args.workers < 1:
        raise UserError("--workers must be at least 1.")
    if args.restart_on_failure < 0:
        raise UserError(
            f"--restart-on-failure must be 0 or more (whole-group restarts after a failure), "
            f"not {args.restart_on_failure}."
        )
    return local.run_local(args.workers, trainer_args, args.restart_on_failure)


def _k8s(args, trainer_args) -> int:
    run = k8s.Run(
        overlay=args.overlay,
        workers=args.workers,
        image=args.image,
        trainer_flags=tuple(trainer_args),
        max_restarts=args.max_restarts,
        queue=args.queue,
        name_prefix=args.name_prefix,
        namespace=args.namespace,
        k8s_dir=args.k8s_dir,
        kubectl=args.kubectl,
    )
    if args.action == "render":
        sys.stdout.write(k8s.render(run))
        return 0
    code = k8s.apply(run)
    if code:
        raise UserError(f"kubectl apply exited with {code} (its message is above).")
    return 0


def _pod(args, trainer_args) -> int:
    pod.main(trainer_args)  # Replaces this process with the trainer; returns only by exiting.
    return 0


COMMANDS = {"local": _local, "k8s": _k8s, "pod": _pod}


def run(argv=None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    # Everything after the first `--` is the trainer's, whatever the subcommand.
    split = argv.index("--") if "--" in argv else len(argv)
    try:
        _check_command(argv[:split])
        args, unknown = _parser().parse_known_args(argv[:split])
        _check_unknown(args, unknown)
        trainer_args = [*getattr(args, "trainer_args", []), *argv[split + 1 :]]
        sys.exit(COMMANDS[args.command](args, trainer_args))
    except UserError as e:
        sys.stderr.write(f"error: {e}\n")
        sys.exit(EXIT_USER_ERROR)
    except KeyboardInterrupt:  # Ctrl-C before `local` takes over SIGINT, or during `k8s apply`: no traceback.
        sys.exit(128 + signal.SIGINT)
