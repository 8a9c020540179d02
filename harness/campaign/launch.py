"""`accelerate launch harness/run.py ...` for one run: on this machine, or on each node of a SLURM job.

accelerate starts the training processes; this module only spells its command line, starts it with
`harness.preemption.LAUNCHER_ENV` (torchrun passes SIGUSR1/SIGUSR2 on as it does SIGTERM, and waits for the
checkpoint), and passes a stop signal on to the training processes themselves (the launcher's children), which
checkpoint and exit with `harness.preemption.EXIT_PREEMPTED`. A launcher that dies of a signal first (SLURM signals
every process of a job step; accelerate's one-process launcher forwards none) leaves its training processes
checkpointing: they are waited for too.

In a SLURM job the launcher starts with the stop signals (SIGTERM, SIGUSR1, SIGUSR2) blocked. SLURM sends them to
every process of a job step, and accelerate's one-process launcher (1.16) dies of SIGUSR1/SIGUSR2, breaking the
pipe it reads its training process's stderr from, which fails the run as it checkpoints, and answers SIGTERM by
killing its training process 5 s later, whatever the checkpoint needs (measured). The training processes inherit
the block and lift it as they set their handlers (`harness.preemption.stop_signals`): a signal SLURM sent them
meanwhile waits for them, and one passed on by the job reaches each once it catches it.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from harness.preemption import LAUNCHER_ENV, STOP_SIGNALS

REPO_ROOT = Path(__file__).resolve().parents[2]
RUN_PY = REPO_ROOT / "harness" / "run.py"
# Ports for a multi-node rendezvous, derived from the job id so that jobs sharing a node do not collide.
PORT_BASE, PORT_SPAN = 20000, 20000


def accelerate_executable() -> list[str]:
    """The `accelerate` command of this interpreter's environment."""
    script = shutil.which("accelerate", path=str(Path(sys.executable).parent))
    return [script, "launch"] if script else [sys.executable, "-m", "accelerate.commands.launch"]


def has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def accelerate_command(
    argv: list[str],
    processes: int,
    nodes: int = 1,
    machine_rank: int = 0,
    main_address: str | None = None,
    port: int | None = None,
    cuda: bool = False,
) -> list[str]:
    """`accelerate launch` of harness/run.py with `processes` in all over `nodes` machines.

    Several processes take --multi_gpu (DDP; gloo on a machine without CUDA); one process without CUDA takes --cpu.
    The run decides its own mixed precision, so the launcher's is left at no."""
    placement = ["--multi_gpu"] if processes > 1 else ([] if cuda else ["--cpu"])
    command = [*accelerate_executable(), *placement, "--num_processes", str(processes)]
    command += ["--num_machines", str(nodes), "--mixed_precision", "no", "--dynamo_backend", "no"]
    if nodes > 1:
        command += ["--machine_rank", str(machine_rank), "--main_process_ip", str(main_address)]
    if port is not None:
        command += ["--main_process_port", str(port)]
    return [*command, str(RUN_PY), *argv]


def node_command(argv: list[str], processes: int, job_env) -> list[str]:
    """The command of this node of a submitit job: machine rank, node count and main node from SLURM's environment
    (submitit's JobEnvironment parses SLURM_JOB_NODELIST, as `scontrol show hostnames` does)."""
    nodes = job_env.num_nodes
    if nodes == 1:
        return accelerate_command(argv, processes, port=free_port(), cuda=has_cuda())
    port = PORT_BASE + int(job_env.raw_job_id) % PORT_SPAN
    return accelerate_command(argv, processes, nodes, job_env.node, job_env.hostnames[0], port, cuda=has_cuda())


def _block_stop_signals() -> None:
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)


def start(command: list[str], env: dict[str, str], log=None, shielded: bool = False) -> subprocess.Popen:
    """Start the launcher in its own session: a terminal's Ctrl-C reaches the campaign, which stops the run cleanly.
    `shielded` (a SLURM job's launcher): it starts with the stop signals blocked."""
    environment = {**os.environ, **LAUNCHER_ENV, "PYTHONUNBUFFERED": "1", **env}
    return subprocess.Popen(
        command,
        env=environment,
        stdout=log,
        stderr=subprocess.STDOUT if log else None,
        start_new_session=True,
        preexec_fn=_block_stop_signals if shielded else None,  # noqa: PLW1509 - the job has no threads
    )


def _stat(pid: int) -> list[str] | None:
    """/proc/PID/stat after the command name (state, parent, ..., start time), or None for a process gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def catches(pid: int, signum: int) -> bool:
    """Whether process `pid` has a handler for `signum` (its SigCgt mask in /proc)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    found = re.search(r"^SigCgt:\s*([0-9a-f]+)$", status, flags=re.M)
    return bool(found) and bool(int(found.group(1), 16) >> (signum - 1) & 1)


def children(pid: int) -> list[int]:
    """The processes whose parent is `pid` (from /proc)."""
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        fields = _stat(int(entry.name))
        if fields is not None and int(fields[1]) == pid:
            found.append(int(entry.name))
    return found


class Workers:
    """The training processes of a launcher, remembered by pid and start time so that they can be signalled and
    waited for after the launcher is gone (a reused pid is not mistaken for one of them)."""

    def __init__(self) -> None:
        self.known: dict[int, str] = {}
        self.delivered: dict[int, set[int]] = {}  # signal: the pids it was passed on to

    def refresh(self, launcher: subprocess.Popen) -> None:
        for pid in children(launcher.pid):
            fields = _stat(pid)
            if fields is not None:
                self.known.setdefault(pid, fields[19])

    def alive(self) -> list[int]:
        running = []
        for pid, started in self.known.items():
            fields = _stat(pid)
            if fields is not None and fields[19] == started and fields[0] != "Z":
                running.append(pid)
        return running

    def deliver(self, signum: int) -> None:
        """Pass `signum` on, once, to each training process that catches it by now (one still starting gets it once
        its handler is set)."""
        done = self.delivered.setdefault(signum, set())
        for pid in self.alive():
            if pid not in done and catches(pid, signum):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signum)
                done.add(pid)

    def wait_gone(self, interval: float = 0.5) -> None:
        while self.alive():
            time.sleep(interval)


class StopRequests:
    """Stop signals this process receives while a run trains, passed on to the run's training processes.

    The handler only records a signal; `wait` delivers it from the main loop, once the training processes exist
    (a signal that arrives while the launcher is still starting is not lost). SIGINT is passed on as SIGTERM.
    """

    def __init__(self, signals: tuple[int, ...]):
        self.received: list[int] = []
        self.workers = Workers()
        self._previous = {signum: signal.signal(signum, self._record) for signum in signals}

    def _record(self, signum: int, _frame) -> None:
        self.received.append(signal.SIGTERM if signum == signal.SIGINT else signum)

    def restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def wait(self, launcher: subprocess.Popen, interval: float = 0.5) -> int:
        """The launcher's exit status, once its training processes have ended too; meanwhile the first stop signal
        is passed on to them."""
        while launcher.poll() is None:
            self.workers.refresh(launcher)
            if self.received:
                self.workers.deliver(self.received[0])
            time.sleep(interval)
        self.workers.wait_gone(interval)
        return launcher.returncode
