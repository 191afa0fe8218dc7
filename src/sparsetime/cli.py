"""The ``sparsetime`` command line: train, resume, lth, sweep, report, runs, export and info.

``sparsetime train [--config FILE.yaml] [key=value ...]`` trains one run (by default SET-ITOP on
an MLP 784-1000-1000-10, Fashion-MNIST, 98% sparse) and prints its final test accuracy,
realised density and ITOP rate Rs; ``sparsetime resume RUN_DIR`` continues an interrupted run;
``sparsetime lth CONFIG`` runs every level of a lottery-ticket experiment;
``sparsetime sweep SWEEP.yaml`` runs a grid of runs (``--status``, ``--dry-run``) and
``sparsetime report PATH...`` turns runs and sweeps into tables and figures;
``sparsetime runs [DIR]`` lists run directories, ``sparsetime export RUN_DIR`` writes a run's
model as a dense state_dict or a sparse safetensors file;
``sparsetime info`` prints versions, device, threads and the datasets found locally.
"""
from __future__ import annotations

import argparse
import logging
import os
import platform
import shlex
import sys
from collections.abc import Sequence
from importlib import metadata
from typing import Any

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``sparsetime`` command."""
    parser = argparse.ArgumentParser(prog="sparsetime", description="Train sparse neural networks from scratch.")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and the final result")
    parser.add_argument("--version", action="version", version=_version_line())
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="train one run (default: SET-ITOP, MLP, Fashion-MNIST, 98%% sparse)",
                           description="Train one run. Dotted key=value overrides change the config,\ne.g. "
                                       "sparsity.density=0.05 optim.lr=0.05 epochs=20.",
                           formatter_class=argparse.RawDescriptionHelpFormatter, add_help=False)
    train.add_argument("-h", "--help", action=_TrainHelp, help="show this help, the config keys with their "
                                                                "defaults, the methods and the models, then exit")
    train.add_argument("--config", metavar="FILE.yaml", help="YAML config; overrides apply on top")
    train.add_argument("--print-config", action="store_true",
                       help="print the resolved config and run directory, then exit without training")
    train.add_argument("overrides", nargs="*", metavar="key=value")
    resume = sub.add_parser("resume", help="continue an interrupted run from its last checkpoint")
    resume.add_argument("run_dir", metavar="RUN_DIR")
    resume.add_argument("overrides", nargs="*", metavar="key=value",
                        help="only keys that do not change results (device, progress, ...)")
    lth = sub.add_parser("lth", help="run every level of a lottery-ticket experiment (resumes where it stopped)",
                         description="Iterative magnitude pruning: level L prunes sparsity.options.fraction of the "
                                     "weights left by level L-1 and retrains steps rewind_step..T "
                                     "(sparsity.options.mode weights|lr|finetune, rewind_step, levels; "
                                     "controls=[reinit,random_mask] adds the two standard controls of every "
                                     "level). Each level is a run directory under one experiment directory; "
                                     "finished levels are skipped on re-runs.")
    lth.add_argument("config", nargs="?", metavar="CONFIG.yaml", help="YAML config; overrides apply on top")
    lth.add_argument("overrides", nargs="*", metavar="key=value")
    sweep = sub.add_parser("sweep", help="run a grid of runs from a sweep file (resumes where it stopped)",
                           description="Run every point of a sweep file (grid x runs x seeds) as a normal run "
                                       "directory under <output_dir>/<name>/, indexed in index.sqlite. Finished "
                                       "points are skipped, interrupted ones resume from their checkpoints.")
    sweep.add_argument("sweep_file", metavar="SWEEP.yaml")
    sweep.add_argument("--workers", type=int, default=1, metavar="N",
                       help="points run at once (torch threads per point: cores // N); default 1")
    sweep.add_argument("--engine", default="local", choices=("local", "ray", "submitit"),
                       help="local worker processes (default), Ray tasks, or a SLURM job array via submitit")
    sweep.add_argument("--dry-run", action="store_true", help="print the points and what would run; write nothing")
    sweep.add_argument("--status", action="store_true", help="print the table of points and their state")
    sweep.add_argument("--retry-failed", action="store_true", help="run failed points again")
    report = sub.add_parser("report", help="tables and figures of runs or sweeps (report.md + PNGs)",
                            description="Write report.md (mean +- sample std over seeds, grouped by the keys that "
                                        "vary) and PNG figures for run directories, sweep directories or folders "
                                        "of run directories.")
    report.add_argument("paths", nargs="+", metavar="PATH")
    report.add_argument("--out", metavar="DIR",
                        help="where to write (default: PATH/report for one PATH, else ./report)")
    report.add_argument("--no-run-links", action="store_true",
                        help="name run directories without linking them (a report committed without its runs)")
    report.add_argument("--made-by", action="append", default=[], metavar="COMMAND",
                        help="the command that made runs not made by a sweep (e.g. a study script), written "
                             "first in the report's Reproduce section; repeatable")
    runs = sub.add_parser("runs", help="one line per run directory: method, data, model, density, status, "
                                       "accuracy, Rs, epochs",
                          description="List every run directory at or below DIR (sweeps and lottery experiments "
                                      "included): method, dataset, model, density (realised once an epoch "
                                      "finished), status (finished, stopped, new), test accuracy, Rs and epochs done.")
    runs.add_argument("dir", nargs="?", default="runs", metavar="DIR", help="where to look (default: runs)")
    export = sub.add_parser("export", help="write a run's model as a dense state_dict or a sparse safetensors file",
                            description="Export the model of RUN_DIR's last checkpoint. dense: a plain state_dict "
                                        "(torch.save; torch.load(weights_only=True) + load_state_dict). sparse: a "
                                        "safetensors file with each sparse layer as CSR (values, column indices, row "
                                        "pointers) plus the dense tensors, read back with sparsetime.nn.load_sparse.")
    export.add_argument("run_dir", metavar="RUN_DIR")
    export.add_argument("--format", choices=("dense", "sparse"), default="sparse", help="default: sparse")
    export.add_argument("--out", metavar="FILE",
                        help="where to write (default: RUN_DIR/model.safetensors or RUN_DIR/model.pt)")
    sub.add_parser("info", help="versions, device, threads and locally available datasets")
    return parser


class _TrainHelp(argparse.Action):
    """``train --help``: the usage plus the config keys, methods and models (built only when asked for)."""

    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS, help: str | None = None) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, help=help)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        parser.epilog = _train_epilog()
        parser.print_help()
        parser.exit()


def _train_epilog() -> str:
    from sparsetime.data import available_datasets
    from sparsetime.models import available_models
    from sparsetime.train import Config, available_methods, get_method, valid_keys

    def default(key: str) -> Any:
        value: Any = Config()
        for part in key.split("."):
            value = getattr(value, part)
        return value

    keys = valid_keys()
    width = max(map(len, keys))
    lines = ["config keys (key = default; dict keys take sub-keys, e.g. model_options.hidden=[300,100]):"]
    lines += [f"  {k:<{width}} = {default(k)!r}" for k in keys]
    lines.append("methods (sparsity.method):")
    lines += [f"  {n:<10} {get_method(n).description}" for n in available_methods()]
    lines.append(f"models (model): {', '.join(available_models())}")
    lines.append(f"datasets (dataset): {', '.join(available_datasets())}")
    return "\n".join(lines)


def _version_line() -> str:
    import torch

    import sparsetime

    return f"sparsetime {sparsetime.__version__} (torch {torch.__version__}, python {platform.python_version()})"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit code."""
    args = build_parser().parse_args(argv)
    from sparsetime.train.distributed import launched, teardown
    from sparsetime.train.logs import console_logging

    follower = (launched() or (0,))[0] != 0  # under torchrun only rank 0 reports progress
    with console_logging(logging.WARNING if args.quiet or follower else logging.INFO):
        code = EXIT_FAILED
        try:
            code = _dispatch(args)
            return code
        finally:
            teardown(succeeded=code == EXIT_OK)


def _dispatch(args: argparse.Namespace) -> int:
    try:
        if args.command == "info":
            return _info()
        if args.command == "train":
            return _train(args)
        if args.command == "lth":
            return _lth(args)
        if args.command == "sweep":
            return _sweep(args)
        if args.command == "report":
            return _report_command(args)
        if args.command == "runs":
            return _runs(args)
        if args.command == "export":
            return _export(args)
        return _resume(args)
    except ValueError as exc:
        print(f"sparsetime: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt as exc:
        run_dir = getattr(exc, "run_dir", None)
        again = ("run the same `sparsetime sweep` command again to continue" if args.command == "sweep"
                 else f"continue with `sparsetime resume {run_dir}`" if run_dir is not None
                 else "run the same command again to continue")
        print(f"sparsetime: interrupted; {again}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # noqa: BLE001 - report every failure as one clear line plus exit code
        from sparsetime.data import ChecksumError, DatasetNotFoundError
        from sparsetime.train import NonFiniteLossError

        if isinstance(exc, (NonFiniteLossError, DatasetNotFoundError, ChecksumError, ImportError)):
            print(f"sparsetime: error: {exc}", file=sys.stderr)
            return EXIT_FAILED
        if isinstance(exc, OSError):  # unwritable output, a full disk, a file where a folder should be
            where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
            print(f"sparsetime: error: {exc.strerror or exc}{where}", file=sys.stderr)
            return EXIT_FAILED
        raise


def _train(args: argparse.Namespace) -> int:
    from sparsetime.train import config_to_yaml, load_config, resolve_config, run_directory, train

    config = load_config(args.config, args.overrides)
    if args.print_config:
        resolved = resolve_config(config)
        print(config_to_yaml(resolved), end="")
        print(f"# run directory: {run_directory(resolved)}")
        return EXIT_OK
    _report(train(config))
    return EXIT_OK


def _lth(args: argparse.Namespace) -> int:
    from sparsetime.experiments import format_table, run_lottery
    from sparsetime.train import load_config

    path, overrides = args.config, list(args.overrides)
    if path is not None and "=" in path:  # only overrides were given
        path, overrides = None, [path, *overrides]
    result = run_lottery(load_config(path, overrides))
    print(f"experiment directory: {result.experiment_dir}")
    print(format_table(result))
    return EXIT_OK


def _sweep(args: argparse.Namespace) -> int:
    from sparsetime.experiments import format_plan, format_status, load_sweep, run_sweep, sweep_state

    spec = load_sweep(args.sweep_file)
    if args.dry_run or args.status:
        state = sweep_state(spec)
        print(format_plan(state) if args.dry_run else format_status(state))
        return EXIT_OK
    state = run_sweep(spec, engine=args.engine, workers=args.workers, retry_failed=args.retry_failed,
                      verbose=not args.quiet)
    print(format_status(state))
    return EXIT_FAILED if state.counts()["failed"] else EXIT_OK


def _report_command(args: argparse.Namespace) -> int:
    from sparsetime.experiments import write_report

    command = " ".join(["sparsetime report", *map(shlex.quote, args.paths),
                        *(["--out", shlex.quote(args.out)] if args.out else []),
                        *(["--no-run-links"] if args.no_run_links else []),
                        *(f"--made-by {shlex.quote(c)}" for c in args.made_by)])
    result = write_report(args.paths, args.out, command=command, run_links=not args.no_run_links,
                          made_by=args.made_by)
    print(f"report: {result.markdown} ({result.runs} runs, {len(result.figures)} figures)")
    for note in result.notes:
        print(f"note: {note}")
    return EXIT_OK


def _runs(args: argparse.Namespace) -> int:
    from sparsetime.integrations.run_table import find_runs, format_runs, read_row

    paths = find_runs(args.dir)
    if not paths:
        print(f"no run directories under {args.dir}")
        return EXIT_OK
    print(format_runs([read_row(p) for p in paths], args.dir))
    return EXIT_OK


def _export(args: argparse.Namespace) -> int:
    from sparsetime.integrations.export_run import export_run

    try:
        result = export_run(args.run_dir, args.format, args.out)
    except ImportError as exc:  # an optional dependency is missing: the message names the extra
        print(f"sparsetime: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    share = 100 * result.bytes / result.dense_bytes if result.dense_bytes else 0.0
    print(f"wrote {result.path} ({args.format}, {result.bytes} bytes = {share:.2f}% of the {result.dense_bytes} "
          f"bytes of the dense tensors; {result.sparse_layers} sparse layers)")
    if result.epoch < result.total_epochs:
        print(f"note: the run has not finished; this is its checkpoint after epoch {result.epoch} of "
              f"{result.total_epochs}")
    return EXIT_OK


def _resume(args: argparse.Namespace) -> int:
    from sparsetime.train import resume

    _report(resume(args.run_dir, args.overrides))
    return EXIT_OK


def _report(result: Any) -> None:
    from sparsetime.train.distributed import launched

    if (launched() or (0,))[0] != 0:  # under torchrun rank 0 alone reports
        return
    s = result.summary
    if result.already_finished:
        print(f"run {result.run_dir} already finished; nothing to do (delete the directory to train again)")
    rs = "n/a" if s.get("itop_rate") is None else f"{s['itop_rate']:.4f}"
    print(f"run directory:    {result.run_dir}")
    print(f"test accuracy:    {100 * s['test_accuracy']:.2f}% (best {100 * s['best_test_accuracy']:.2f}%)")
    print(f"realised density: {s['density']:.4f}")
    print(f"Rs (ITOP rate):   {rs}")
    print(f"epochs:           {s['epochs']} in {s['train_seconds']:.1f} s, {s['train_flops']:.3e} training FLOPs")


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def _info() -> int:
    import torch

    import sparsetime
    from sparsetime.data import available_datasets, locate_dataset
    from sparsetime.models import available_models
    from sparsetime.train import available_methods, resolve_device

    print(f"sparsetime {sparsetime.__version__}")
    print(f"python     {platform.python_version()} ({platform.platform()})")
    for package in ("torch", "numpy", "numba", "tqdm", "pyyaml", "matplotlib", "ray", "submitit"):
        print(f"{package:<10} {_version(package)}")
    cuda = (f"available, {torch.cuda.device_count()} device(s): "
            + ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
            if torch.cuda.is_available() else "not available")
    print(f"device     {resolve_device('auto')} (auto; CUDA {cuda}; override with device=...)")
    print(f"threads    torch intra-op {torch.get_num_threads()}, inter-op {torch.get_num_interop_threads()}, "
          f"CPU cores {os.cpu_count()}")
    print("datasets   (found locally without downloading)")
    for name in available_datasets():
        where = "generated on the fly" if name == "synthetic" else (locate_dataset(name) or "not found")
        print(f"  {name:<14} {where}")
    print(f"models     {', '.join(available_models())}")
    print(f"methods    {', '.join(available_methods())}")
    from sparsetime.kernels import numba_available

    kernels = "numba" if numba_available() else "torch fallback (install numba for the fast kernels)"
    print(f"sparse     sparsity.execution=sparse|auto runs sparse kernels on CPU: {kernels}")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
