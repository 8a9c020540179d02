"""harness/run.py's `main` once per argument list, the lists separated by `--then`, in one interpreter: under
`accelerate launch` each process runs them in turn, so several runs share one launch. Prints `exit N` per run.

Test hooks, set through the environment:
  HIDE_MODULES=a,b     these libraries cannot be imported, as when their extra is not installed
  RECORD_SAMPLES=DIR   every sample a tar-shard split serves is appended to DIR/<pid>.txt as "split<TAB>key"
"""

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def hide_modules() -> None:
    for name in filter(None, os.environ.get("HIDE_MODULES", "").split(",")):
        sys.modules[name] = None  # import raises ImportError


def record_samples() -> None:
    folder = os.environ.get("RECORD_SAMPLES")
    if not folder:
        return
    from harness.data.readers.shards import TarShardImages

    serve = TarShardImages.__getitem__

    def recorded(self, index):
        with open(Path(folder) / f"{os.getpid()}.txt", "a") as log:
            log.write(f"{self.split}\t{self.keys[index].decode()}\n")
        return serve(self, index)

    TarShardImages.__getitem__ = recorded


def main(argv: list[str]) -> int:
    hide_modules()
    record_samples()
    from harness.run import main as run

    runs, current = [], []
    for arg in argv:
        if arg == "--then":
            runs.append(current)
            current = []
        else:
            current.append(arg)
    runs.append(current)
    codes = []
    for args in runs:
        codes.append(run(args))
        print(f"exit {codes[-1]}", flush=True)
    return max(codes)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
