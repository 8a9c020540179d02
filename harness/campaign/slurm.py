"""What SLURM says about a campaign's jobs, read with its own commands.

Why a job is ending, asked from inside the job once its run stopped on a signal that was not submitit's own
(`scontrol show job`, while the job is COMPLETING). Measured on SLURM 22.05:

    what stopped the job                        Restarts   PreemptTime   EndTime                 here
    scancel                                     unchanged  None          now, before the limit   cancelled
    scontrol requeue; preemption, REQUEUE mode  + 1        None          Unknown                 requeued
    preemption, CANCEL mode                     unchanged  now           now                     preempted
    the time limit                              unchanged  None          StartTime + TimeLimit   preempted
    scancel --signal=TERM (the job goes on)     JobState RUNNING                                 preempted

Whether a job has ended: submitit asks sacct, which answers nothing where accounting is off
(AccountingStorageType=accounting_storage/none, common on small clusters) or its database is away; squeue then
answers, as slurmctld keeps an ended job for MinJobAge (300 s by default), and a job it no longer lists has ended.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import time
from datetime import datetime
from typing import Literal

from submitit.slurm.slurm import SlurmInfoWatcher, SlurmJob

from harness.campaign.spec import slurm_minutes

Stop = Literal["cancelled", "requeued", "preempted"]
# The state given to a job squeue no longer lists: it ended more than MinJobAge ago, how is not known.
ENDED = "ENDED"
COMMAND_TIMEOUT_S = 60
# How often, at most, the campaign asks SLURM about its jobs while waiting (submitit's own default is 600 s).
POLL_S = 60


def _run(command: list[str]) -> subprocess.CompletedProcess:
    """A SLURM command's output; one that cannot run or answer in time reads as a failure."""
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as e:
        return subprocess.CompletedProcess(command, 1, "", str(e))


def job_record(job_id: str) -> dict[str, str]:
    """`scontrol show job` of one job as {field: value} (empty where scontrol cannot answer)."""
    found = _run(["scontrol", "show", "job", "--oneliner", job_id])
    if found.returncode != 0:
        return {}
    return dict(re.findall(r"(?:^|\s)([A-Za-z][\w/:]*)=(\S*)", found.stdout))


def restarts_here() -> int:
    """How many times SLURM had requeued this job when this start of it began."""
    return int(os.environ.get("SLURM_RESTART_COUNT") or 0)


def why_stopping(record: dict[str, str], restarts: int) -> Stop:
    """Why SLURM is ending a job whose run stopped on SIGTERM, from its record (see the module's table):
    requeued (SLURM starts it again by itself), cancelled (a user's scancel), or preempted (anything else; the
    job asks submitit to requeue it). A record that cannot be read counts as preempted."""
    if not record:
        return "preempted"
    if int(record.get("Restarts") or 0) > restarts:
        return "requeued"
    if record.get("JobState") == "RUNNING" or record.get("PreemptTime", "None") not in ("None", ""):
        return "preempted"
    return "preempted" if _at_time_limit(record) else "cancelled"


def _at_time_limit(record: dict[str, str]) -> bool:
    limit, start, end = record.get("TimeLimit", ""), _when(record.get("StartTime")), _when(record.get("EndTime"))
    if start is None or end is None or not re.fullmatch(r"[\d:-]+", limit):
        return False
    return (end - start).total_seconds() >= slurm_minutes(limit) * 60


def _when(text: str | None) -> datetime | None:
    try:
        return datetime.fromisoformat(text) if text else None
    except ValueError:
        return None


def squeue_states(job_ids: set[str]) -> dict[str, dict[str, str]] | None:
    """Each job's state as squeue lists it ({"JobID", "State"}, like submitit's sacct reading), ENDED for a job
    slurmctld no longer knows; None where squeue cannot answer."""
    if not job_ids:
        return {}
    found = _run(["squeue", "--noheader", "--states=all", "--format=%i|%T", f"--jobs={','.join(sorted(job_ids))}"])
    if found.returncode != 0 and "Invalid job id" not in found.stderr:
        return None
    listed = dict(line.split("|", 1) for line in found.stdout.split() if "|" in line)
    return {job_id: {"JobID": job_id, "State": listed.get(job_id, ENDED)} for job_id in job_ids}


class Watcher(SlurmInfoWatcher):
    """submitit's watcher of SLURM jobs, asking squeue where sacct cannot answer."""

    def __init__(self, delay_s: int = POLL_S):
        super().__init__(delay_s=delay_s)
        self.sacct_error: str | None = None

    def update(self) -> None:
        command = self._make_command()
        if command is None:
            return
        self._num_calls += 1
        found = _run(command)
        if found.returncode == 0:
            self._info_dict.update(self.read_info(found.stdout))
        else:
            self._note_sacct_error(found.stderr.strip() or f"exit status {found.returncode}")
            self._info_dict.update(squeue_states(self._unfinished()) or {})
        self._last_status_check = time.time()
        for job_id in self._registered - self._finished:
            if self.is_done(job_id, mode="cache"):
                self._finished.add(job_id)

    def _unfinished(self) -> set[str]:
        return {job_id.split("_")[0] for job_id in self._registered - self._finished}

    def _note_sacct_error(self, error: str) -> None:
        if self.sacct_error is None:
            logging.getLogger("submitit").info(f"sacct cannot tell ({error}): following the jobs with squeue")
        self.sacct_error = error


class CampaignSlurmJob(SlurmJob):
    """A campaign's SLURM job, followed by `Watcher` (shared by all of them, as submitit shares its own)."""

    watcher = Watcher()


def cancelled(job: SlurmJob) -> bool:
    """Whether the job's last known state is a cancellation (by a user or an administrator)."""
    return job.watcher.get_state(job.job_id, mode="cache").upper().startswith("CANCELLED")
