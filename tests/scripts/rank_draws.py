"""Under `accelerate launch`: build a run as harness/run.py builds it and save what this process draws.

    accelerate launch ... tests/scripts/rank_draws.py OUT_DIR RUN_ARGS...

OUT_DIR/rank<R>.pt holds the first training batch (images after the workers and the device stage, and the sampler
indices they came from), five Mixup/CutMix draws (lambda, CutMix or not) and a draw from torch's generator (what
drop path uses).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch  # noqa: E402

from harness.assemble import build_run  # noqa: E402
from harness.fitting import make_trainer  # noqa: E402
from harness.run import parse_args, plan_run  # noqa: E402


def first_batch_indices(run) -> list[int]:
    """The sampler indices of this process's first batch (numbered copies folded back to dataset indices)."""
    sampler = run.train_loader.loader.batch_sampler.sampler
    indices = [i % run.train_samples for i in sampler]
    return indices[: run.batches.micro_batch]


def main() -> None:
    out, argv = Path(sys.argv[1]), sys.argv[2:]
    args = parse_args(argv)
    plan = plan_run(args)
    run = build_run(plan)
    trainer = make_trainer(run)
    run.train_loader.set_epoch(0)
    images, labels = next(iter(run.train_loader))
    mixes = [trainer.mixup._params_per_batch() for _ in range(5)]
    draws = {
        "images": images.float().cpu(),
        "labels": labels.cpu(),
        "indices": torch.tensor(first_batch_indices(run)),
        "lam": torch.tensor([float(lam) for lam, _ in mixes], dtype=torch.float64),
        "cutmix": torch.tensor([bool(c) for _, c in mixes]),
        "torch": torch.rand(4),
    }
    out.mkdir(parents=True, exist_ok=True)
    torch.save(draws, out / f"rank{run.accelerator.process_index}.pt")
    run.accelerator.wait_for_everyone()


if __name__ == "__main__":
    main()
