"""The job submitit runs for each campaign run: `accelerate launch` on every node, requeued through submitit.

submitit pickles a `TrainingJob`, starts it once per node (one task per node) and, on its preemption or time-limit
signal (SIGUSR2 unless SUBMITIT_PREEMPT_SIGNAL names another), calls `checkpoint` on the first node's task: the
training processes get the signal, finish the update in flight, checkpoint and exit; `checkpoint` returns the
submission that resumes the run (`--resume RUN_DIR`) and submitit requeues the job with it (`scontrol requeue` on
SLURM; its local executor restarts the task). A run stopped by a signal that reached the training processes some
other way (SLURM signals every process of a job step; a SIGUSR1 sent to the job is passed on to them) is requeued
the same way, through submitit's handler.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import submitit
from submitit.helpers import Checkpointable, DelayedSubmission

from harness.campaign import launch, rundirs


class RunFailed(RuntimeError):
    """The training ended without a finished record and without being stopped by a signal."""


def _wait_in_handler(launcher) -> None:
    """Wait for the launcher from inside a signal handler, where Popen.wait's lock may be held by the frame the
    signal interrupted."""
    if launcher.returncode is not None:
        return
    try:
        _, status = os.waitpid(launcher.pid, 0)
        launcher.returncode = os.waitstatus_to_exitcode(status)
    except ChildProcessError:
        pass


class TrainingJob(Checkpointable):
    """One campaign run: harness/run.py options, the run's --output folder, the process count, extra environment."""

    def __init__(self, argv: list[str], output: str, processes: int, env: dict[str, str]):
        self.argv, self.output, self.processes, self.env = list(argv), output, processes, dict(env)
        self._launcher, self._stops = None, None

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k not in ("_launcher", "_stops")}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._launcher, self._stops = None, None

    def command(self, job_env, resume: str | None = None) -> tuple[list[str], str | None]:
        """This node's `accelerate launch` (resuming the run where it has a checkpoint) and the run it resumes."""
        run_dir = Path(resume) if resume else rundirs.latest_run_dir(Path(self.output))
        resumed_from = str(run_dir) if rundirs.resumable(run_dir) else None
        argv = ["--resume", resumed_from] if resumed_from else [*self.argv, "--output", self.output]
        return launch.node_command(argv, self.processes, job_env), resumed_from

    def __call__(self, resume: str | None = None) -> dict:
        output = Path(self.output)
        if rundirs.outcome(output) == "done":  # requeued after the run had finished
            return {"status": "done", "exit_status": 0, "resumed_from": None}
        job_env = submitit.JobEnvironment()
        command, resumed_from = self.command(job_env, resume)
        own = job_env._usr_sig()
        stops = self._stops = launch.StopRequests(tuple(s for s in (signal.SIGUSR1, signal.SIGUSR2) if s != own))
        try:
            self._launcher = launch.start(command, self.env)
            status = stops.wait(self._launcher)
        finally:
            stops.restore()
        seen = rundirs.outcome(output)
        if seen is None and stops.received:
            seen = "preempted"  # stopped by the signal before it could checkpoint: start again from the last one
        if seen == "preempted" and job_env.global_rank == 0:
            signal.raise_signal(own)  # submitit checkpoints and requeues, as if the cluster had signalled the job
        if seen is None:
            raise RunFailed(f"training ended with exit status {status} without a finished record")
        return {"status": seen, "exit_status": status, "resumed_from": resumed_from}

    def checkpoint(self, resume: str | None = None) -> DelayedSubmission:
        """Called by submitit on its signal: stop the training at a checkpoint, resume from it once requeued."""
        if self._launcher is not None:
            self._stops.workers.refresh(self._launcher)
            self._stops.workers.signal(submitit.JobEnvironment._usr_sig())
            _wait_in_handler(self._launcher)
            self._stops.workers.wait_gone()
        run_dir = rundirs.latest_run_dir(Path(self.output))
        return DelayedSubmission(self, str(run_dir) if rundirs.resumable(run_dir) else None)


def estimate_job(argv: list[str], processes: int, env: dict[str, str]) -> int:
    """`--estimate` of one setting on the job's node(s); its exit status."""
    command = launch.node_command(argv, processes, submitit.JobEnvironment())
    return launch.StopRequests(()).wait(launch.start(command, env))
