"""A one-node SLURM cluster in a folder, from Debian's packages (slurm-wlm, munge): its own munged, slurmctld and
slurmd, with their keys, sockets, state and logs in that folder, no accounting, no cgroups.

    sudo apt-get install slurm-wlm munge
    sudo python -m tests.scripts.slurm_cluster start /tmp/slurm     # prints: export SLURM_CONF=/tmp/slurm/slurm.conf
    sudo python -m tests.scripts.slurm_cluster stop /tmp/slurm

The node is this machine as `slurmd -C` sees it (CPUs, memory), named localhost; slurmd needs root.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

DAEMONS = ("munged", "slurmctld", "slurmd")
START_TIMEOUT_S = 60

SLURM_CONF = """\
ClusterName=harness
SlurmctldHost=localhost
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SlurmUser=root
AuthType=auth/munge
AuthInfo=socket={folder}/munge/munge.socket
CredType=cred/munge
StateSaveLocation={folder}/state
SlurmdSpoolDir={folder}/spool
SlurmctldPidFile={folder}/slurmctld.pid
SlurmdPidFile={folder}/slurmd.pid
SlurmctldLogFile={folder}/slurmctld.log
SlurmdLogFile={folder}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
MpiDefault=none
JobRequeue=1
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
ReturnToService=2
KillWait=30
MinJobAge=300
NodeName=localhost CPUs={cpus} RealMemory={memory} State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
"""


def unavailable() -> str | None:
    """Why a cluster cannot start here (None when it can)."""
    missing = [name for name in (*DAEMONS, "mungekey", "sbatch") if shutil.which(name, path=_search_path()) is None]
    if missing:
        return f"SLURM is not installed ({', '.join(missing)} missing): apt-get install slurm-wlm munge"
    if os.geteuid() != 0:
        return "slurmd needs root"
    return None


def _search_path() -> str:
    return os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])


def _which(name: str) -> str:
    return shutil.which(name, path=_search_path()) or name


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def this_node() -> tuple[int, int]:
    """CPUs and memory (MB) of this machine, as slurmd reports them."""
    found = subprocess.run([_which("slurmd"), "-C"], capture_output=True, text=True, check=True).stdout
    cpus, memory = re.search(r"\bCPUs=(\d+)", found), re.search(r"\bRealMemory=(\d+)", found)
    return int(cpus.group(1)), int(memory.group(1))


class Cluster:
    """The daemons of a one-node cluster whose files are all under `folder`."""

    def __init__(self, folder: Path):
        self.folder = Path(folder).absolute()
        self.conf = self.folder / "slurm.conf"

    @property
    def env(self) -> dict[str, str]:
        """This environment with SLURM_CONF naming the cluster, for sbatch, squeue, scontrol and scancel."""
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    def write_config(self) -> None:
        for sub in ("munge", "state", "spool"):
            (self.folder / sub).mkdir(parents=True, exist_ok=True)
        (self.folder / "munge").chmod(0o700)
        cpus, memory = this_node()
        ports = {"ctld_port": _free_port(), "slurmd_port": _free_port()}
        self.conf.write_text(SLURM_CONF.format(folder=self.folder, cpus=cpus, memory=memory, **ports))

    def start(self) -> None:
        """Write the configuration, start munged, slurmctld and slurmd, and wait for the node to be idle."""
        self.write_config()
        munge = self.folder / "munge"
        key = munge / "munge.key"
        if not key.exists():
            subprocess.run([_which("mungekey"), "--create", "--keyfile", str(key)], check=True)
        key.chmod(0o600)
        self._daemon(
            "munged",
            "--force",
            f"--key-file={key}",
            f"--socket={munge / 'munge.socket'}",
            f"--pid-file={munge / 'munged.pid'}",
            f"--log-file={munge / 'munged.log'}",
            f"--seed-file={munge / 'munged.seed'}",
        )
        self._wait_for(lambda: (munge / "munge.socket").exists(), "munged's socket")
        self._daemon("slurmctld", "-f", str(self.conf), "-i")
        self._wait_for(lambda: self.scontrol("ping").returncode == 0, "slurmctld")
        self._daemon("slurmd", "-f", str(self.conf), "-N", "localhost")
        self._wait_for(self.node_idle, "the node to be idle")

    def _daemon(self, name: str, *args: str) -> None:
        """Start a daemon in the background (it forks; its pid file says which process it is)."""
        with (self.folder / f"{name}.out").open("a") as out:
            subprocess.run([_which(name), *args], stdout=out, stderr=subprocess.STDOUT, check=True, env=self.env)

    def _wait_for(self, ready, what: str) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not ready():
            if time.monotonic() > deadline:
                raise RuntimeError(f"timed out waiting for {what}; see the logs in {self.folder}")
            time.sleep(0.5)

    def scontrol(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["scontrol", *args], capture_output=True, text=True, env=self.env)

    def node_idle(self) -> bool:
        found = self.scontrol("show", "node", "localhost").stdout
        return bool(re.search(r"State=IDLE\b", found))

    def pids(self) -> dict[str, int]:
        files = {
            "munged": self.folder / "munge" / "munged.pid",
            "slurmctld": self.folder / "slurmctld.pid",
            "slurmd": self.folder / "slurmd.pid",
        }
        found = {}
        for name, path in files.items():
            try:
                found[name] = int(path.read_text().split()[0])
            except (OSError, ValueError, IndexError):
                pass
        return found

    def stop(self) -> None:
        """Stop the daemons (slurmd, slurmctld, munged), each by the pid its pid file names, and wait for them."""
        pids = self.pids()
        for name in ("slurmd", "slurmctld", "munged"):
            pid = pids.get(name)
            if pid is None:
                continue
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
            deadline = time.monotonic() + 30
            while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
                time.sleep(0.2)
            if Path(f"/proc/{pid}").exists():
                os.kill(pid, signal.SIGKILL)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.scripts.slurm_cluster", description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=("start", "stop"))
    parser.add_argument("folder", type=Path)
    args = parser.parse_args(argv)
    cluster = Cluster(args.folder)
    if args.action == "stop":
        cluster.stop()
        return 0
    reason = unavailable()
    if reason:
        print(f"error: {reason}", file=sys.stderr)
        return 2
    cluster.start()
    print(f"export SLURM_CONF={cluster.conf}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
