"""Stopping on a signal: finish the update in flight, agree on it across processes, checkpoint, exit 3.

Clusters signal a job before its time limit or when they preempt it: SLURM sends SIGTERM (and whatever
`--signal` asks for), submitit's SLURM executor SIGUSR2 by default, other schedulers SIGUSR1. The handlers only
record the signal; the training loop asks `StopAgreement` after each optimizer update whether to stop, so a
stop never falls between the micro-batches of one update, and every process stops after the same update even
when the signal reached only one of them or reached them at different updates.
"""

from __future__ import annotations

import ctypes
import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

# The exit status of a run that stopped on a signal after writing a complete checkpoint: continue it with
# `--resume RUN_DIR`. Any other non-zero status is an error (2: bad input or a refused state, 1: a crash).
EXIT_PREEMPTED = 3
STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2)
# Environment for `accelerate launch` (torchrun underneath) so the launcher forwards SIGUSR1/SIGUSR2 to the
# training processes as it forwards SIGTERM, and leaves them 5 minutes (not 30 s) to checkpoint before SIGKILL.
LAUNCHER_ENV = {
    "PET_SIGNALS_TO_HANDLE": "SIGTERM,SIGINT,SIGHUP,SIGQUIT,SIGUSR1,SIGUSR2",
    "TORCH_ELASTIC_SHUTDOWN_TIMEOUT": "300",
}
_PR_SET_PDEATHSIG = 1  # linux/prctl.h


class StopRequested(Exception):
    """Every process agreed to stop after update `update` because of signal `signum`; the checkpoint is written."""

    def __init__(self, signum: int, update: int):
        self.signal_name = signal.Signals(signum).name
        self.update = update
        super().__init__(f"stopped on {self.signal_name} after update {update}")

    @property
    def reason(self) -> str:
        return f"signal {self.signal_name}"


class SignalFlag:
    """The first stop signal this process received (0 before any); set by the handlers, read by the loop."""

    def __init__(self) -> None:
        self.signum = 0

    def record(self, signum: int, _frame=None) -> None:
        self.signum = self.signum or signum


@contextmanager
def stop_signals() -> Iterator[SignalFlag]:
    """Catch the stop signals for the duration of a run, then restore the handlers there were before (or, after a
    stop signal under a launcher, ignore them until the process exits)."""
    flag = SignalFlag()
    if threading.current_thread() is not threading.main_thread():  # Python installs handlers only there
        yield flag
        return
    previous = {sig: signal.signal(sig, flag.record) for sig in STOP_SIGNALS}
    # A campaign's SLURM job starts the launcher with them blocked (harness.campaign.launch): lift that here.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
    _stop_when_the_launcher_dies()
    try:
        yield flag
    finally:
        # After a stop the process is on its way out: a launcher's SIGTERM to a rank that has not exited yet
        # (torchrun ends the others when the first exits) must not turn its status 3 into death by signal.
        stopping_under_launcher = bool(flag.signum) and _parent_is_launcher()
        for sig, handler in previous.items():
            signal.signal(sig, signal.SIG_IGN if stopping_under_launcher else handler)


def _stop_when_the_launcher_dies() -> None:
    """Under `accelerate launch` or torchrun, a launcher killed by a signal it does not forward (SIGTERM to
    accelerate's one-process launcher, SIGUSR1/2 to torchrun without LAUNCHER_ENV) would leave this process
    training with no one to report to. Ask Linux to send SIGTERM when the launcher dies, so it checkpoints."""
    if not _parent_is_launcher():
        return
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM))
    except (OSError, AttributeError):  # not Linux
        return
    if not _parent_is_launcher():  # the launcher died before prctl: no SIGTERM will come
        os.kill(os.getpid(), signal.SIGTERM)


def _parent_is_launcher() -> bool:
    try:
        argv = Path(f"/proc/{os.getppid()}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    words = {Path(a.decode(errors="replace")).name for a in argv[:4]}
    accelerate = {"accelerate", "launch"} <= words or "accelerate.commands.launch" in words
    return accelerate or bool({"torchrun", "torch.distributed.run"} & words)


class StopAgreement:
    """Whether every process should stop now, asked at the same updates on every process.

    One process reads its own flag. Several exchange their flags with a maximum over a small gloo group of CPU
    integers: accelerate has no collective on host values, and one over the training backend would put a
    device read in every update. The exchange started after one update is collected after the next, so it
    overlaps the update's compute; every process collects the same value at the same update and stops there."""

    def __init__(self, flag: SignalFlag, num_processes: int):
        self.flag = flag
        self._group = torch.distributed.new_group(backend="gloo") if num_processes > 1 else None
        self._pending: tuple[object, torch.Tensor] | None = None

    def at_update(self) -> int:
        """After an optimizer update: the signal to stop on now (0: go on)."""
        if self._group is None:
            return self.flag.signum
        agreed = self._collect()
        if not agreed:
            self._start_exchange()
        return self._agree(agreed)

    def at_epoch_end(self) -> int:
        """After an epoch's checkpoint: the same question answered at once, so a signal that came during the
        evaluation or the checkpoint is honoured before the next epoch starts."""
        if self._group is None:
            return self.flag.signum
        agreed = self._collect()
        if not agreed:
            self._start_exchange()
            agreed = self._collect()
        return self._agree(agreed)

    def close(self) -> None:
        """Wait for the exchange still in flight (every process started it) before the run ends."""
        if self._group is not None:
            self._collect()

    def _agree(self, agreed: int) -> int:
        # A process that stops on another's signal is stopping too: its flag says so, and `stop_signals` then
        # keeps the launcher's SIGTERM (sent when the first rank exits) from killing it on its way out.
        if agreed:
            self.flag.record(agreed)
        return agreed

    def _start_exchange(self) -> None:
        sent = torch.tensor([self.flag.signum], dtype=torch.int32)
        work = torch.distributed.all_reduce(sent, op=torch.distributed.ReduceOp.MAX, group=self._group, async_op=True)
        self._pending = (work, sent)

    def _collect(self) -> int:
        if self._pending is None:
            return 0
        work, result = self._pending
        self._pending = None
        work.wait()
        return int(result.item())  # a CPU tensor: host memory, not a device read
