"""`accelerate launch harness/run.py ...` for one run: on this machine, or on each node of a SLURM job.

accelerate starts the training processes; this module only spells its command line, starts it, and passes a
stop signal on to the training processes (the launcher's children), which checkpoint and exit with
`harness.preemption.EXIT_PREEMPTED`. The launcher is started ignoring the stop signals, so one that reaches it too
(SLURM signals every process of a job step) leaves it waiting for its processes instead of ending it; torch's
elastic agent, which handles SIGTERM itself, passes SIGTERM on to them.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

try:
    from harness.preemption import LAUNCHER_ENV
except ImportError:  # a checkout without preemption handling
    LAUNCHER_ENV = {}

REPO_ROOT = Path(__file__).resolve().parents[2]
RUN_PY = REPO_ROOT / "harness" / "run.py"
STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2)
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


def start(command: list[str], env: dict[str, str], log=None) -> subprocess.Popen:
    """Start the launcher in its own session: a terminal's Ctrl-C reaches the campaign, which stops the run cleanly."""
    environment = {**os.environ, "PYTHONUNBUFFERED": "1", **env}
    return subprocess.Popen(
        command, env=environment, stdout=log, stderr=subprocess.STDOUT if log else None, start_new_session=True
    )


def children(pid: int) -> list[int]:
    """The processes whose parent is `pid` (from /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def stop_training(launcher: subprocess.Popen, signum: int) -> list[int]:
    """Send `signum` to the training processes of a running launcher; the pids signalled."""
    if launcher.poll() is not None:
        return []
    signalled = []
    for pid in children(launcher.pid):
        try:
            os.kill(pid, signum)
            signalled.append(pid)
        except ProcessLookupError:
            pass
    return signalled


class StopRequests:
    """Stop signals this process receives while a run trains, passed on to the run's training processes.

    The handler only records a signal; `wait` delivers it from the main loop, once the training processes exist
    (a signal that arrives while the launcher is still starting is not lost). SIGINT is passed on as SIGTERM.
    """

    def __init__(self, signals: tuple[int, ...]):
        self.received: list[int] = []
        self.delivered = False
        self._previous = {signum: signal.signal(signum, self._record) for signum in signals}

    def _record(self, signum: int, _frame) -> None:
        self.received.append(signal.SIGTERM if signum == signal.SIGINT else signum)

    def restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def wait(self, launcher: subprocess.Popen, interval: float = 0.5) -> int:
        """The launcher's exit status; meanwhile the first stop signal is passed on to its processes."""
        while launcher.poll() is None:
            if self.received and not self.delivered:
                self.delivered = bool(stop_training(launcher, self.received[0]))
            time.sleep(interval)
        return launcher.returncode
