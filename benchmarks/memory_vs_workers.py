"""RSB A3 on the in-memory path (RandAugment on the device) against the per-image path (timm's PIL pipeline in the
workers), seed by seed, on the same machine: training images per second and top-1.

    python -m benchmarks.memory_vs_workers --output benchmarks/memory-vs-workers --readme benchmarks/README.md
    python -m benchmarks.memory_vs_workers --render benchmarks/memory-vs-workers --readme benchmarks/README.md

Each seed runs the two paths back to back (memory first, then workers), so both see the machine in the same state.
The records are the runs' own run directories; the table is rendered from their summary.json files.
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

MARKS = ("<!-- memory_vs_workers:start -->", "<!-- memory_vs_workers:end -->")
SETTINGS = {  # label: the options after --recipe rsb_a3 --budget proxy
    "digits": ["--dataset", "digits"],
    "fashion_mnist": ["--dataset", "fashion_mnist", "--set", "model=resnet18", "--epochs", "2"],
}
PATHS = {"memory": ["--loader", "memory"], "workers": ["--loader", "workers", "--augment-on", "workers"]}


def finished(label: str, path: str, seed: int, output: Path) -> bool:
    """A complete run of this pair is already recorded here (a campaign stopped half-way goes on where it was)."""
    summaries = (output / label / path).glob("*/summary.json")
    return any(json.loads(s.read_text())["seed"] == seed for s in summaries)


def run(label: str, path: str, seed: int, output: Path) -> None:
    """One run; its checkpoints are dropped afterwards (the record is the run directory's JSON, CSV and plots)."""
    before = set((output / label / path).glob("*"))
    command = harness_command(
        "--recipe", "rsb_a3", "--budget", "proxy", *SETTINGS[label], *PATHS[path],
        "--seed", str(seed), "--output", str(output / label / path),
    )  # fmt: skip
    print("+ " + " ".join(command[1:]), flush=True)
    subprocess.run(command, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    for run_dir in set((output / label / path).glob("*")) - before:
        shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)


def records(folder: Path) -> pd.DataFrame:
    rows = []
    for summary in sorted(folder.glob("*/*/*/summary.json")):
        record = json.loads(summary.read_text())
        rows.append(
            {
                "setting": summary.parts[-4],
                "path": record["data_path"],
                "augment_on": record["augment_on"],
                "seed": record["seed"],
                "model": record["model"],
                "epochs": record["epochs_run"],
                "img_per_s": record["train_img_per_s"],
                "top1": record["eval_top1"],
            }
        )
    return pd.DataFrame(rows)


def render(folder: Path) -> str:
    frame = records(folder)
    wide = frame.pivot_table(
        index=["setting", "model", "epochs", "seed"], columns="path", values=["img_per_s", "top1"]
    ).reset_index()
    wide.columns = [" ".join(c).strip() if isinstance(c, tuple) else c for c in wide.columns]
    wide["img/s memory / workers"] = wide["img_per_s memory"] / wide["img_per_s workers"]
    summary = (
        frame.groupby(["setting", "path"])
        .agg(top1_mean=("top1", "mean"), top1_std=("top1", "std"), img_per_s_median=("img_per_s", "median"))
        .reset_index()
    )
    return (
        "Seed by seed (training img/s: the run's steady rate, the median of its epochs after the first):\n\n"
        + wide.to_markdown(index=False, floatfmt=".2f")
        + "\n\nOver the seeds:\n\n"
        + summary.to_markdown(index=False, floatfmt=".2f")
        + "\n"
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.memory_vs_workers", description=__doc__.splitlines()[0])
    p.add_argument("--output", type=Path, help="run the pairs, writing run directories here")
    p.add_argument("--render", type=Path, help="only render the table from run directories already here")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--only", choices=SETTINGS, action="append", help="one setting only (repeatable)")
    p.add_argument("--readme", type=Path, help="replace this file's memory-vs-workers block")
    args = p.parse_args(argv)
    folder = args.render or args.output
    if folder is None:
        p.error("give --output (run and render) or --render")
    if args.output is not None:
        for label in args.only or SETTINGS:
            for seed in map(int, args.seeds.split(",")):
                for path in PATHS:
                    if not finished(label, path, seed, args.output):
                        run(label, path, seed, args.output)
    table = render(folder)
    print(table)
    if args.readme:
        write_readme(args.readme, f"`python -m benchmarks.memory_vs_workers --output {folder}`:\n\n{table}", *MARKS)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
