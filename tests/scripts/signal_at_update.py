"""Run harness/run.py as a scheduler would interrupt it: a signal right after optimizer update N, on one rank.

    python tests/scripts/signal_at_update.py UPDATE SIGNAL RANK -- RUN.PY ARGUMENTS
    accelerate launch --multi_gpu --num_processes 2 tests/scripts/signal_at_update.py 5 SIGUSR1 1 -- --recipe ...

The process sends the signal to itself from inside the training loop, so the moment is exact (mid-epoch, between
two updates) whatever the machine's load; everything after it is the real handler, agreement and checkpoint."""

import os
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # this checkout's harness, not an installed one

from harness import engine  # noqa: E402
from harness.run import main  # noqa: E402


def signal_after_update(update: int, signum: int, rank: int) -> None:
    count_update = engine.count_update

    def count_then_signal(t: engine.Trainer) -> None:
        count_update(t)
        if t.num_updates == update and int(os.environ.get("RANK", "0")) == rank:
            os.kill(os.getpid(), signum)

    engine.count_update = count_then_signal


if __name__ == "__main__":
    update, name, rank, separator, *argv = sys.argv[1:]
    assert separator == "--", "usage: signal_at_update.py UPDATE SIGNAL RANK -- RUN.PY ARGUMENTS"
    signal_after_update(int(update), getattr(signal, name), int(rank))
    sys.exit(main(argv))
