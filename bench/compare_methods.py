"""Side-by-side comparison of sparse training methods on real Fashion-MNIST (issue 4 real check).

MLP 784-1000-1000-10 at 98% sparsity (density 0.02), every method trained for the same number
of epochs with the runner's defaults (SGD lr 0.01, momentum 0.9, Nesterov, batch 128, constant
lr): dense, SET-ITOP, SNIP, SynFlow, SNIP-SET-ITOP and a lottery ticket (iterative magnitude
pruning, ``--lth-levels`` levels with p = 1 - 0.02^(1/levels), weight rewinding to step 0; each
level trains ``--epochs`` epochs, so the ticket's own training equals the others' but the
experiment costs (levels + 1) times as many). Runs are ordinary run directories under
``--output-dir`` (re-running skips finished ones). Prints a table of test accuracy, realised
density, Rs, training FLOPs and seconds.

    python bench/compare_methods.py [--epochs 3] [--seed 0] [--lth-levels 4] [--train-subset 0]
        [--output-dir runs/compare] [--methods dense set snip synflow snip-set lth]
"""
from __future__ import annotations

import argparse
import time

from sparsetime.experiments import run_lottery
from sparsetime.train import load_config, train

DENSITY = 0.02
METHODS = ("dense", "set", "snip", "synflow", "snip-set", "lth")


def _base(args: argparse.Namespace) -> list[str]:
    return ["dataset=fashion_mnist", "model=mlp", "model_options.hidden=[1000, 1000]", f"epochs={args.epochs}",
            f"seed={args.seed}", f"sparsity.density={DENSITY}", f"output_dir={args.output_dir}",
            "data.download=false", "progress=log", "log_interval=1000", f"data.train_subset={args.train_subset}"]


def _row(name: str, summary: dict, epochs: str, seconds: float) -> dict:
    return {"method": name, "epochs": epochs, "test_accuracy": summary["test_accuracy"],
            "density": summary["density"], "itop_rate": summary.get("itop_rate"),
            "train_flops": summary["train_flops"], "seconds": seconds}


def run(args: argparse.Namespace) -> list[dict]:
    """Train every selected method (skipping finished runs) and return one row per method."""
    rows = []
    overrides = {
        "dense": ["sparsity.method=dense"],
        "set": ["sparsity.method=set"],
        "snip": ["sparsity.method=snip"],
        "synflow": ["sparsity.method=synflow"],
        "snip-set": ["sparsity.method=set", "sparsity.init_mask=snip"],
    }
    for name in args.methods:
        start = time.perf_counter()
        if name == "lth":
            fraction = 1.0 - DENSITY ** (1.0 / args.lth_levels)
            result = run_lottery(load_config(None, _base(args) + [
                "sparsity.method=lth", f"sparsity.options.levels={args.lth_levels}",
                f"sparsity.options.fraction={fraction}"]))
            last = result.levels[-1]
            summary = {"test_accuracy": last.test_accuracy, "density": last.density, "itop_rate": None,
                       "train_flops": sum(r.train_flops for r in result.levels)}
            rows.append(_row(f"lth ({args.lth_levels} levels, p={fraction:.3f})", summary,
                             f"{args.epochs} (total {args.epochs * len(result.levels)})", time.perf_counter() - start))
            for r in result.levels:
                print(f"  lth level {r.level}: density {r.density:.4f}, test accuracy {100 * r.test_accuracy:.2f}%")
            continue
        result = train(load_config(None, _base(args) + overrides[name]))
        rows.append(_row(name, result.summary, str(args.epochs), time.perf_counter() - start))
    return rows


def format_rows(rows: list[dict]) -> str:
    """Markdown table of the rows."""
    lines = ["| method | epochs | test acc | density | Rs | train FLOPs | wall s |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        rs = "n/a" if r["itop_rate"] is None else f"{r['itop_rate']:.3f}"
        lines.append(f"| {r['method']} | {r['epochs']} | {100 * r['test_accuracy']:.2f}% | {r['density']:.4f} | {rs} "
                     f"| {r['train_flops']:.3e} | {r['seconds']:.0f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lth-levels", type=int, default=4)
    parser.add_argument("--output-dir", default="runs/compare")
    parser.add_argument("--train-subset", type=int, default=0, help="train on this many examples (0 = all 60000)")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    args = parser.parse_args()
    rows = run(args)
    subset = args.train_subset or 60000
    print(f"\nFashion-MNIST ({subset} training examples, full 10000 test set), MLP 784-1000-1000-10, density "
          f"{DENSITY}, seed {args.seed}, {args.epochs} epochs per run")
    print(format_rows(rows))


if __name__ == "__main__":
    main()
