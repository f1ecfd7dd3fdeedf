"""`python -m launch` / `mllaunch`: run the trainer as a local multi-worker job, in a pod, or on Kubernetes."""

import argparse
import sys
from pathlib import Path

from launch import k8s, local, pod
from trainer.errors import EXIT_USER_ERROR, UserError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mllaunch", description=__doc__, fromfile_prefix_chars="@")
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


def _local(args, trainer_args) -> int:
    if args.workers < 1:
        raise UserError("--workers must be at least 1.")
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
    args = _parser().parse_args(argv[:split])
    trainer_args = [*getattr(args, "trainer_args", []), *argv[split + 1 :]]
    try:
        sys.exit(COMMANDS[args.command](args, trainer_args))
    except UserError as e:
        sys.stderr.write(f"error: {e}\n")
        sys.exit(EXIT_USER_ERROR)
