"""`--estimate` against a measured epoch: for each setting, the estimate and then a two-epoch training run, back to
back on the same machine; the table compares the projected epoch with the measured steady (second) epoch.

    python -m benchmarks.estimate_vs_measured --output benchmarks/estimates --readme benchmarks/README.md
    python -m benchmarks.estimate_vs_measured --output benchmarks/estimates --render-only --readme benchmarks/README.md
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd

from benchmarks.common import ROOT, harness_command, write_readme

MARK_START, MARK_END = "<!-- estimate:start -->", "<!-- estimate:end -->"
# Three recipes, both data paths, three model sizes, with and without accumulation; two epochs each on the CPU.
# The bundled digits make epochs of seconds; the Fashion-MNIST settings (Debian's dataset-fashion-mnist) make
# epochs of minutes, closer to what a projection is for.
SETTINGS = {
    "lenet_mnist": ["--recipe", "lenet_mnist", "--dataset", "digits", "--budget", "proxy"],
    "cnn_fmnist": ["--recipe", "cnn_fmnist", "--dataset", "digits", "--budget", "proxy", "--micro-batch", "16"],
    "rsb_a3": ["--recipe", "rsb_a3", "--dataset", "digits", "--budget", "proxy", "--set", "model=resnet18"],
    "cnn_fmnist-fashion_mnist": [
        "--recipe", "cnn_fmnist", "--dataset", "fashion_mnist", "--budget", "proxy", "--micro-batch", "16"
    ],
    "rsb_a3-fashion_mnist": [
        "--recipe", "rsb_a3", "--dataset", "fashion_mnist", "--budget", "proxy", "--set", "model=resnet18"
    ],
}  # fmt: skip
COMMON = ["--epochs", "2", "--workers", "0", "--seed", "0"]


def run_pair(name: str, output: Path) -> None:
    """The estimate, then the training run it projects, in fresh interpreters one after the other; each pair
    in a folder of its own, so repeated pairs show how much the machine moved between them."""
    folder = output / name / f"pair-{len(list((output / name).glob('pair-*'))) + 1}"
    for extra in (["--estimate"], []):
        command = harness_command(*SETTINGS[name], *COMMON, *extra)
        subprocess.run([*command, "--output", str(folder)], check=True, cwd=ROOT)
    for checkpoints in folder.glob("*/checkpoints"):
        shutil.rmtree(checkpoints)  # records only


def row(name: str, pair: Path) -> dict:
    (estimate_file,) = pair.glob("*/estimate.json")
    (summary_file,) = pair.glob("*/summary.json")
    estimate, summary = json.loads(estimate_file.read_text()), json.loads(summary_file.read_text())
    epochs = pd.read_csv(summary_file.parent / "metrics.csv")
    measured = float(epochs["epoch_time_s"].iloc[-1])
    return {
        "recipe": name,
        "pair": pair.name,
        "model": summary["model"],
        "dataset": summary["dataset"],
        "data path": summary["data_path"],
        "global batch = micro x accumulation": f"{estimate['global_batch_size']} = {estimate['micro_batch_size']} "
        f"x {estimate['grad_accum_steps']}",
        "estimated epoch (s)": round(estimate["epoch_s"], 2),
        "measured epoch 2 (s)": round(measured, 2),
        "measured epoch 1 (s)": round(float(epochs["epoch_time_s"].iloc[0]), 2),
        "estimate / measured": round(estimate["epoch_s"] / measured, 2),
        "estimated img/s": round(estimate["img_per_s"]),
        "measured img/s (epoch 2)": round(float(epochs["train_img_per_s"].iloc[-1])),
        "waiting for data": f"{100 * estimate['data_wait_share']:.0f}%",
    }


def render(output: Path) -> str:
    rows = [row(name, pair) for name in SETTINGS for pair in sorted((output / name).glob("pair-*"))]
    first = json.loads(next(output.glob("*/pair-*/*/estimate.json")).read_text())
    header = (
        f"`python -m benchmarks.estimate_vs_measured --output {output.relative_to(ROOT)} --readme "
        f"benchmarks/README.md` on {first['device']} ({first['cpu_threads_per_process']} threads), "
        f"torch {first['versions']['torch']}, {first['created_at'][:10]}:\n\n"
    )
    return header + pd.DataFrame(rows).to_markdown(index=False)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.estimate_vs_measured", description=__doc__.splitlines()[0])
    p.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "estimates")
    p.add_argument("--render-only", action="store_true", help="render the table from the records already there")
    p.add_argument("--only", choices=SETTINGS, action="append", help="measure only these settings again")
    p.add_argument("--readme", type=Path, help="replace the estimate block of this Markdown file")
    args = p.parse_args(argv)
    output = args.output.resolve()
    if not args.render_only:
        for name in args.only or SETTINGS:
            run_pair(name, output)
    table = render(output)
    print(table)
    if args.readme:
        write_readme(args.readme, table + "\n", MARK_START, MARK_END)
    return 0


if __name__ == "__main__":
    sys.exit(main())
