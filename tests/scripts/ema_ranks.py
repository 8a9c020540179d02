"""Under `accelerate launch`: what each process's model and EMA hold.

accelerate launch ... tests/scripts/ema_ranks.py prepared OUT_DIR RUN_ARGS...
    build the run as harness/run.py builds it (its trainer too, which builds the EMA) and write
    OUT_DIR/rank<R>.json: the prepared model's wrappers and the EMA's and the bare model's state dict keys.
accelerate launch ... tests/scripts/ema_ranks.py fit OUT_DIR RUN_ARGS...
    run harness/run.py and write OUT_DIR/rank<R>.pt: the EMA's BatchNorm statistics at the end of each epoch's
    training and when the EMA is evaluated.
"""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch  # noqa: E402

import harness.engine  # noqa: E402
from harness.assemble import build_run  # noqa: E402
from harness.fitting import make_trainer  # noqa: E402
from harness.run import main, parse_args, plan_run  # noqa: E402


def batchnorm_statistics(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {
        k: v.detach().clone().cpu() for k, v in module.named_buffers() if k.endswith(("running_mean", "running_var"))
    }


def prepared(out: Path, argv: list[str]) -> None:
    args = parse_args(argv)
    run = build_run(plan_run(args))
    trainer = make_trainer(run)
    model = run.model
    inner = getattr(model, "_orig_mod", model)
    bare = inner.module if isinstance(inner, torch.nn.parallel.DistributedDataParallel) else inner
    record = {
        "prepared": type(model).__name__,
        "inside_compiled": type(inner).__name__,
        "has_no_sync": hasattr(model, "no_sync"),
        "ema_keys": list(trainer.ema.state_dict()),  # ModelEmaV3's: "module." and the model's keys
        "bare_keys": list(bare.state_dict()),
        # with --compile the EMA is evaluated through torch.compile of its own module
        "ema_evaluated_compiles_the_ema": getattr(trainer.ema_evaluated, "_orig_mod", None) is trainer.ema.module,
    }
    (out / f"rank{run.accelerator.process_index}.json").write_text(json.dumps(record))


def fit(out: Path, argv: list[str]) -> None:
    seen = {"trained": [], "evaluated": []}
    trainers = []
    train_one_epoch, evaluate = harness.engine.train_one_epoch, harness.engine.evaluate

    def recording_train_one_epoch(t, *args, **kwargs):
        trainers[:] = [t]
        row = train_one_epoch(t, *args, **kwargs)
        seen["trained"].append(batchnorm_statistics(t.ema.module))
        return row

    def recording_evaluate(accelerator, model, *args, **kwargs):
        if trainers and model is trainers[0].ema.module:
            seen["evaluated"].append(batchnorm_statistics(model))
        return evaluate(accelerator, model, *args, **kwargs)

    harness.engine.train_one_epoch, harness.engine.evaluate = recording_train_one_epoch, recording_evaluate
    status = main(argv)
    rank = trainers[0].accelerator.process_index
    torch.save(seen, out / f"rank{rank}.pt")
    sys.exit(status)


if __name__ == "__main__":
    mode, out_dir, rest = sys.argv[1], Path(sys.argv[2]), sys.argv[3:]
    {"prepared": prepared, "fit": fit}[mode](out_dir, rest)
