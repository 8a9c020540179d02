"""The job submitit runs for each campaign run: `accelerate launch` on every node, requeued through submitit.

submitit pickles a `TrainingJob`, starts it once per node (one task per node) and, on its preemption or time-limit
signal (SIGUSR2 unless SUBMITIT_PREEMPT_SIGNAL names another), calls `checkpoint` on the first node's task: the
training processes get the signal, finish the update in flight, checkpoint and exit; `checkpoint` returns the
submission that resumes the run (`--resume RUN_DIR`) and submitit requeues the job with it (`scontrol requeue` on
SLURM; its local executor restarts the task).

A run stopped by a signal that reached the training processes some other way (SLURM's SIGTERM reaches every process
of a job step; a SIGUSR1 sent to the job is passed on to them) ends as SLURM is ending the job
(`harness.campaign.slurm.why_stopping`): a user's scancel ends the job with the run cancelled; a job SLURM has
requeued itself (`scontrol requeue`, preemption in REQUEUE mode) exits without a result, for its next start to
resume the run; any other stop (preemption, a time limit reached without the warning) is requeued through
submitit's handler, as if submitit's signal had come.

The job holds a lock in the run's --output folder while it trains, so two jobs never train one run at once.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import time
from pathlib import Path

import submitit
from submitit.helpers import Checkpointable, DelayedSubmission

from harness.campaign import launch, rundirs, slurm
from harness.campaign.state import FileLock, Held

# The exit status of a job SLURM has requeued itself: no result is written, the job's next start resumes the run.
EXIT_REQUEUED_BY_SLURM = 3


class RunFailed(RuntimeError):
    """The training ended without a finished record and without being stopped by a signal."""


class RunInUseError(RuntimeError):
    """Another job is training the run."""


def run_lock(output: Path, job_env) -> FileLock:
    """The lock this node of the job holds on the run's --output folder while it trains."""
    output.mkdir(parents=True, exist_ok=True)
    holder = f"job {job_env.job_id} on {socket.gethostname()} (pid {os.getpid()})"
    return FileLock(output / f".job-node{job_env.node}.lock", holder)


def _stop_in_handler(launcher, workers: launch.Workers, signum: int, interval: float = 0.5) -> None:
    """Pass `signum` on to the training processes and wait for them and the launcher, from inside a signal handler
    (where Popen.wait's lock may be held by the frame the signal interrupted)."""
    while launcher.returncode is None:
        workers.refresh(launcher)
        workers.deliver(signum)
        try:
            pid, status = os.waitpid(launcher.pid, os.WNOHANG)
        except ChildProcessError:
            break
        if pid:
            launcher.returncode = os.waitstatus_to_exitcode(status)
        else:
            time.sleep(interval)
    workers.wait_gone(interval)


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
        try:
            with run_lock(output, job_env):
                return self._train(job_env, output, resume)
        except Held as e:
            raise RunInUseError(f"run folder {output} is being trained by {e.holder}; this job leaves it") from None

    def _train(self, job_env, output: Path, resume: str | None) -> dict:
        command, resumed_from = self.command(job_env, resume)
        own = job_env._usr_sig()
        others = tuple(s for s in (signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2) if s != own)
        stops = self._stops = launch.StopRequests(others)
        try:
            self._launcher = launch.start(command, self.env, shielded=True)
            status = stops.wait(self._launcher)
        finally:
            stops.restore()
        seen = rundirs.outcome(output)
        if seen is None and stops.received:
            seen = "preempted"  # stopped by the signal before it could checkpoint: start again from the last one
        if seen == "preempted":
            seen = self._stopped(job_env, own)
        if seen is None:
            raise RunFailed(f"training ended with exit status {status} without a finished record")
        return {"status": seen, "exit_status": status, "resumed_from": resumed_from}

    def _stopped(self, job_env, own: int) -> str:
        """The run stopped on a signal other than submitit's: end the job as SLURM is ending it."""
        why = "preempted"
        if job_env.cluster == "slurm":
            why = slurm.why_stopping(slurm.job_record(job_env.job_id), slurm.restarts_here())
        if why == "requeued":
            print(f"job {job_env.job_id} was requeued by SLURM: its next start resumes the run", flush=True)
            sys.exit(EXIT_REQUEUED_BY_SLURM)  # no result: the job is not over
        if why == "preempted" and job_env.global_rank == 0:
            signal.raise_signal(own)  # submitit checkpoints and requeues, as if the cluster had signalled the job
        return why

    def checkpoint(self, resume: str | None = None) -> DelayedSubmission:
        """Called by submitit on its signal: stop the training at a checkpoint, resume from it once requeued."""
        if self._launcher is not None:
            _stop_in_handler(self._launcher, self._stops.workers, submitit.JobEnvironment._usr_sig())
        run_dir = rundirs.latest_run_dir(Path(self.output))
        return DelayedSubmission(self, str(run_dir) if rundirs.resumable(run_dir) else None)


def estimate_job(argv: list[str], processes: int, env: dict[str, str]) -> int:
    """`--estimate` of one setting on the job's node(s); its exit status."""
    command = launch.node_command(argv, processes, submitit.JobEnvironment())
    return launch.StopRequests(()).wait(launch.start(command, env))
