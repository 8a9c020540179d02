"""The same recipe trained by timm's train.py and by the harness, seed by seed, on the real Fashion-MNIST.

    python -m benchmarks.timm_parity --timm-train-py ~/pytorch-image-models/train.py \
        --output benchmarks/timm-parity --readme benchmarks/README.md
    python -m benchmarks.timm_parity --render benchmarks/timm-parity --readme benchmarks/README.md

timm's train.py comes from the user's own checkout of pytorch-image-models; it is run, never copied here. The recipe
is benchmarks/timm_parity.yaml (RSB A3's procedure: LAMB, BCE, Mixup/CutMix, RandAugment, cosine with a warmup, at
ResNet-18 and 28 px). The harness resolves it for the folder, `--dump-recipe` writes the resolved recipe, and
`--dump-recipe --format timm` the args.yaml train.py trains with `-c`: both trainers run the same exported recipe on
the same class folders (PNG files made from Fashion-MNIST: the first N of each class for training, M for evaluation),
on the CPU, with one data-loading worker each and timm's PIL augmentation in the workers. Per seed the two run back
to back. The record keeps each run's per-epoch LR, train loss and top-1 (timm's summary.csv, the harness's
metrics.csv) and the final top-1 of both, with Welch's test of the difference.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import stats

from benchmarks.common import ROOT, harness_command, write_readme
from harness.data.readers.idx import idx_splits

MARKS = ("<!-- timm_parity:start -->", "<!-- timm_parity:end -->")
RECIPE = ROOT / "benchmarks" / "timm_parity.yaml"
HARNESS = harness_command()


def make_folder(folder: Path, train_per_class: int, val_per_class: int) -> None:
    """train/ and val/ class folders of Fashion-MNIST PNGs (the Debian package's files), made once."""
    if (folder / "done").is_file():
        return
    train, val, _ = idx_splits("fashion_mnist", None, False, None, None)
    for split, data, per_class in (("train", train, train_per_class), ("val", val, val_per_class)):
        labels = np.asarray(data.targets)
        for label in range(10):
            target = folder / split / f"{label}_{data.classes[label].split('/')[0].replace(' ', '_')}"
            target.mkdir(parents=True, exist_ok=True)
            for index in np.flatnonzero(labels == label)[:per_class]:
                Image.fromarray(data.data[index].numpy()).save(target / f"{index:05d}.png")
    (folder / "done").write_text("")


def export(work: Path, data: Path) -> tuple[Path, Path]:
    """The recipe resolved for the folder (recipe.yaml) and as train.py's args.yaml, both written by the harness."""
    recipe, args = work / "recipe.yaml", work / "args.yaml"
    folder = ["--dataset", "folder", "--data-dir", str(data)]
    subprocess.run([*HARNESS, "--recipe", str(RECIPE), *folder, "--dump-recipe", str(recipe)], check=True, cwd=ROOT)
    timm_format = ["--dump-recipe", str(args), "--format", "timm"]
    subprocess.run([*HARNESS, "--recipe", str(recipe), *folder, *timm_format], check=True, cwd=ROOT)
    return recipe, args


def run_harness(recipe: Path, data: Path, seed: int, out: Path) -> Path:
    command = [*HARNESS, "--recipe", str(recipe), "--dataset", "folder", "--data-dir", str(data), "--seed", str(seed)]
    command += ["--loader", "workers", "--augment-on", "workers", "--workers", "1", "--output", str(out)]
    print("+ " + " ".join(command[1:]), flush=True)
    subprocess.run(command, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    run_dir = max(out.glob("*/summary.json"), key=lambda p: p.stat().st_mtime).parent
    shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
    return run_dir


def run_timm(train_py: Path, args_file: Path, data: Path, seed: int, out: Path) -> Path:
    command = [sys.executable, str(train_py), "-c", str(args_file), "--data-dir", str(data), "--val-split", "val"]
    command += ["--seed", str(seed), "--device", "cpu", "-j", "1", "--output", str(out), "--experiment", f"seed{seed}"]
    command += ["--checkpoint-hist", "1"]
    print("+ " + " ".join(command[1:]), flush=True)
    subprocess.run(command, check=True, cwd=out.parent, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    run_dir = out / f"seed{seed}"
    for checkpoint in run_dir.glob("*.pth.tar"):
        checkpoint.unlink()
    return run_dir


def epochs_of(csv_path: Path, loss: str) -> dict[str, list[float]]:
    rows = list(csv.DictReader(csv_path.open()))
    columns = {"lr": "lr", "loss": loss, "top1": "eval_top1"}
    return {key: [float(r[column]) for r in rows] for key, column in columns.items()}


def collect(output: Path) -> dict:
    """Per seed and trainer: per-epoch LR, train loss and top-1, read from the runs' own files."""
    runs: dict[str, dict] = {"harness": {}, "timm": {}}
    for metrics in sorted((output / "harness").glob("*/metrics.csv")):
        seed = json.loads((metrics.parent / "summary.json").read_text())["seed"]
        runs["harness"][str(seed)] = epochs_of(metrics, "train_loss")
    for summary in sorted((output / "timm").glob("seed*/summary.csv")):
        runs["timm"][summary.parent.name.removeprefix("seed")] = epochs_of(summary, "train_loss")
    return runs


def compare(runs: dict) -> dict:
    """Final top-1 of each trainer (mean, std), Welch's test, and whether the LRs and epoch counts are equal."""
    seeds = sorted(set(runs["harness"]) & set(runs["timm"]), key=int)
    final = {who: [runs[who][s]["top1"][-1] for s in seeds] for who in ("harness", "timm")}
    diff = float(np.mean(final["harness"]) - np.mean(final["timm"]))
    se = math.sqrt(sum(np.var(final[w], ddof=1) / len(seeds) for w in final)) if len(seeds) > 1 else math.nan
    welch = stats.ttest_ind(final["harness"], final["timm"], equal_var=False) if len(seeds) > 1 else None
    same_lr = all(np.allclose(runs["harness"][s]["lr"], runs["timm"][s]["lr"], rtol=1e-6) for s in seeds)
    same_epochs = all(len(runs["harness"][s]["lr"]) == len(runs["timm"][s]["lr"]) for s in seeds)
    return {
        "seeds": seeds,
        "final_top1": final,
        "difference": diff,
        "standard_error": se,
        "welch_t": None if welch is None else float(welch.statistic),
        "welch_p": None if welch is None else float(welch.pvalue),
        "within_two_se": bool(abs(diff) <= 2 * se) if se == se else None,
        "lr_equal": same_lr,
        "epochs_equal": same_epochs,
    }


def _mean_std(values: list[float], digits: int) -> str:
    if len(values) < 2:
        return f"{values[0]:.{digits}f}" if values else "—"
    return f"{np.mean(values):.{digits}f} ± {np.std(values, ddof=1):.{digits}f}"


def render(record: dict) -> str:
    """The per-epoch table (LR of both, train loss and top-1 mean ± std over seeds) and the final comparison."""
    runs, result = record["runs"], record["comparison"]
    seeds = result["seeds"]
    if not seeds:
        return "No seed has both runs yet."
    lines = ["| epoch | LR (timm) | LR (harness) | train loss timm | train loss harness | top-1 timm | top-1 harness |"]
    lines.append("|---|---|---|---|---|---|---|")
    for epoch in range(len(runs["timm"][seeds[0]]["lr"])):
        cells = [f"{runs[w][seeds[0]]['lr'][epoch]:.3g}" for w in ("timm", "harness")]
        for key, digits in (("loss", 4), ("top1", 2)):
            cells += [_mean_std([runs[w][s][key][epoch] for s in seeds], digits) for w in ("timm", "harness")]
        lines.append(f"| {epoch + 1} | " + " | ".join(cells) + " |")
    verdict = "indistinguishable" if result["within_two_se"] else "distinguishable"
    lines += [
        "",
        f"Final top-1 over seeds {', '.join(seeds)}: timm's train.py {_mean_std(result['final_top1']['timm'], 2)}, "
        f"the harness {_mean_std(result['final_top1']['harness'], 2)}; difference {result['difference']:+.2f} "
        f"(standard error {result['standard_error']:.2f}), Welch's t = {result['welch_t']:.2f}, "
        f"p = {result['welch_p']:.2f}: {verdict} (|difference| {'within' if result['within_two_se'] else 'beyond'} "
        f"twice its standard error). Per-epoch LR equal: {'yes' if result['lr_equal'] else 'no'}; epochs trained "
        f"equal: {'yes' if result['epochs_equal'] else 'no'}.",
    ]
    return "\n".join(lines)


def measure(args: argparse.Namespace) -> None:
    output, work = args.output.resolve(), args.work.resolve()
    data = work / "data"
    work.mkdir(parents=True, exist_ok=True)
    make_folder(data, args.train_per_class, args.val_per_class)
    recipe, args_file = export(work, data)
    for seed in args.seeds:
        if not any(json.loads(p.read_text())["seed"] == seed for p in (output / "harness").glob("*/summary.json")):
            run_harness(recipe, data, seed, output / "harness")
        if not (output / "timm" / f"seed{seed}" / "summary.csv").is_file():
            (output / "timm").mkdir(parents=True, exist_ok=True)
            run_timm(args.timm_train_py, args_file, data, seed, output / "timm")
    shutil.copy(recipe, output / "recipe.yaml")
    shutil.copy(args_file, output / "args.yaml")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.timm_parity",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--timm-train-py", type=Path, help="train.py of a pytorch-image-models checkout")
    p.add_argument("--output", type=Path, default=ROOT / "runs" / "timm-parity")
    p.add_argument("--work", type=Path, default=ROOT / "runs" / "timm-parity-work", help="the PNG folders, exports")
    p.add_argument("--render", type=Path, help="only render the record of this earlier --output")
    p.add_argument("--seeds", type=lambda s: [int(x) for x in s.split(",")], default=[0, 1, 2])
    p.add_argument("--train-per-class", type=int, default=500)
    p.add_argument("--val-per-class", type=int, default=200)
    p.add_argument("--readme", type=Path, help="replace this file's timm_parity block")
    args = p.parse_args(argv)
    if args.render is None and (args.timm_train_py is None or not args.timm_train_py.is_file()):
        p.error("--timm-train-py PATH (train.py of a pytorch-image-models checkout) is needed to measure")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    output = (args.render or args.output).resolve()
    if args.render is None:
        measure(args)
    runs = collect(output)
    record = {"runs": runs, "comparison": compare(runs)}
    (output / "parity.json").write_text(json.dumps(record, indent=2) + "\n")
    table = render(record)
    print(table)
    if args.readme:
        where = output.relative_to(ROOT)
        command = f"`python -m benchmarks.timm_parity --timm-train-py PATH/train.py --output {where}`"
        write_readme(args.readme, f"{command}:\n\n{table}", *MARKS)
    return 0


if __name__ == "__main__":
    sys.exit(main())
