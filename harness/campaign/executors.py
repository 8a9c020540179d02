"""Running a campaign's runs: one after another on this machine (local), or one submitit job each (slurm,
submitit-local). No scheduling of our own: accelerate starts the processes, submitit submits and requeues.
"""

from __future__ import annotations

import os
import shlex
import signal
from collections.abc import Callable
from pathlib import Path

from harness.campaign import launch, rundirs
from harness.campaign.grid import GridRun
from harness.campaign.spec import Campaign
from harness.campaign.state import RunState, now
from harness.config import ConfigError

# A submitit-local job's time limit when the campaign gives none.
LOCAL_JOB_MINUTES = 7 * 24 * 60
# Time-limit requeues a run may take before submitit gives up on it; each starts from the last checkpoint.
MAX_TIMEOUT_REQUEUES = 20
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2)

Save = Callable[[], None]


def _resume_point(spec: GridRun, root: Path) -> Path | None:
    run_dir = rundirs.latest_run_dir(spec.output(root))
    return run_dir if rundirs.resumable(run_dir) else None


def _argv(spec: GridRun, root: Path, resume: Path | None) -> list[str]:
    return ["--resume", str(resume)] if resume else [*spec.argv, "--output", str(spec.output(root))]


def _say(state: RunState, what: str) -> None:
    print(f"{state.id}: {what}", flush=True)


def ended_line(state: RunState) -> str:
    if state.status == "done":
        return f"done, top-1 {state.eval_top1:.2f}"
    if state.status == "cancelled":
        return "cancelled (run the campaign again to resume it)"
    return f"{state.status}: {state.error}" if state.error else state.status


# --------------------------------------------------------------------------- local


def run_locally(campaign: Campaign, root: Path, todo: list[tuple[GridRun, RunState]], env: dict, save: Save) -> bool:
    """Each run through `accelerate launch` in turn. A stop signal (Ctrl-C, SIGTERM, SIGUSR1/2) is passed on to the
    run in progress, which checkpoints; no further run starts. Returns whether the campaign was stopped."""
    stops = launch.StopRequests(STOP_SIGNALS)
    try:
        for spec, state in todo:
            if stops.received:
                break
            _run_one(campaign, root, spec, state, env, stops, save)
    finally:
        stops.restore()
    return bool(stops.received)


def _run_one(campaign, root: Path, spec: GridRun, state: RunState, env: dict, stops, save: Save) -> None:
    resume = _resume_point(spec, root)
    command = launch.accelerate_command(
        _argv(spec, root, resume), campaign.launch.processes, port=launch.free_port(), cuda=launch.has_cuda()
    )
    log_path = root / "logs" / f"{spec.id}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("a") as log:
        log.write(f"# {now()}: {shlex.join(command)}\n")
        log.flush()
        offset = log.tell()
        state.launched("local", None, str(resume) if resume else None, [log_path.relative_to(root).as_posix()])
        save()
        _say(state, f"{'resuming' if resume else 'starting'} (log: {log_path})")
        status = stops.wait(launch.start(command, env, log))
    with log_path.open() as log:
        log.seek(offset)
        error = rundirs.last_error_line(log.read())
    state.ended(root, status, error)
    if stops.received and state.status == "failed":  # stopped by the campaign's signal before it could checkpoint
        name = signal.Signals(stops.received[0]).name
        state.status, state.error = "preempted", f"stopped by {name} before it could checkpoint"
    save()
    _say(state, ended_line(state))


# --------------------------------------------------------------------------- submitit


def make_executor(campaign: Campaign, root: Path):
    """submitit's executor for the campaign: SLURM's, or its local one (real subprocesses on this machine)."""
    import submitit

    # The job's interpreter unpickles harness.campaign.jobs.TrainingJob: this checkout comes first on its path.
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(launch.REPO_ROOT), os.environ.get("PYTHONPATH")) if p)
    cluster = "slurm" if campaign.executor == "slurm" else "local"
    executor = submitit.AutoExecutor(
        folder=root / "submitit" / "%j",
        cluster=cluster,
        slurm_max_num_timeout=MAX_TIMEOUT_REQUEUES,
        local_max_num_timeout=MAX_TIMEOUT_REQUEUES,
    )
    executor.update_parameters(**job_parameters(campaign))
    return executor


def job_parameters(campaign: Campaign) -> dict:
    """submitit's parameters: one task per node, which starts accelerate there; SLURM's keys as the file sets them."""
    slurm, nodes = campaign.slurm, campaign.launch
    if campaign.executor == "slurm":
        gpus = slurm.gpus_per_node if slurm.gpus_per_node is not None else nodes.per_node
    else:  # the local executor makes exactly these GPUs visible to the job
        gpus = nodes.per_node if launch.has_cuda() else 0
    return {
        "timeout_min": slurm.time or LOCAL_JOB_MINUTES,
        "nodes": nodes.nodes,
        "tasks_per_node": 1,
        "gpus_per_node": gpus,
        "cpus_per_task": slurm.cpus_per_task,
        "slurm_partition": slurm.partition,
        "slurm_account": slurm.account,
        "slurm_qos": slurm.qos,
        "slurm_constraint": slurm.constraint,
        "slurm_additional_parameters": slurm.additional_parameters() or None,
    }


def submit(campaign: Campaign, root: Path, todo: list[tuple[GridRun, RunState]], env: dict, save: Save) -> list:
    """One job per run; each run's job id and log files are recorded as it is submitted. Returns (state, job)."""
    from harness.campaign.jobs import TrainingJob

    executor = make_executor(campaign, root)
    submitted = []
    for spec, state in todo:
        resume = _resume_point(spec, root)
        executor.update_parameters(name=f"{campaign.name}.{spec.id}")
        job_fn = TrainingJob(list(spec.argv), str(spec.output(root)), campaign.launch.processes, env)
        job = _followed(campaign.executor, root, _submit_one(campaign, spec, executor, job_fn, resume))
        state.launched(campaign.executor, str(job.job_id), str(resume) if resume else None, job_logs(job))
        save()
        _say(state, f"submitted as job {job.job_id} (log: {job.paths.stdout})")
        submitted.append((state, job))
    return submitted


def _submit_one(campaign: Campaign, spec: GridRun, executor, job_fn, resume: Path | None):
    """submitit's job for one run; sbatch's refusal is one line (ConfigError)."""
    from submitit.core.utils import FailedJobError

    try:
        return executor.submit(job_fn, str(resume) if resume else None)
    except FailedJobError as e:
        reason = rundirs.last_error_line(str(e))
        if "gres" in reason and campaign.slurm.gpus_per_node is None:
            reason += " (on a cluster without GPUs, set slurm.gpus_per_node: 0)"
        raise ConfigError(f"run {spec.id}: sbatch refused its job: {reason}") from None


def job_logs(job) -> list[str]:
    return [str(job.paths.stdout), str(job.paths.stderr)]


def _followed(executor: str, root: Path, job):
    """A SLURM job as the campaign follows it (`harness.campaign.slurm.CampaignSlurmJob`: squeue where sacct cannot
    tell); a submitit-local job as submitted (its controller's process tells)."""
    return rebuild_job(executor, root, str(job.job_id)) if executor == "slurm" else job


def rebuild_job(executor: str, root: Path, job_id: str):
    """The submitit job of an earlier invocation, to ask whether it ended."""
    import submitit

    from harness.campaign.slurm import CampaignSlurmJob

    job_class = CampaignSlurmJob if executor == "slurm" else submitit.LocalJob
    return job_class(folder=root / "submitit" / "%j", job_id=job_id)


def job_running(job) -> bool:
    if hasattr(job, "_process") and job._process is None:  # a local job of an earlier invocation: its controller
        try:
            os.kill(int(job.job_id), 0)
            return True
        except (ProcessLookupError, ValueError):
            return False
    return not job.done(force_check=True)


def settle(state: RunState, job, root: Path) -> None:
    """The run's status once its job ended: cancelled where the job says so or SLURM does (a job cancelled before
    it could write its result), else from its folder, else from the job's error and log."""
    failure = job.exception()
    error = None
    if failure is not None:
        text = "\n".join(filter(None, [job.stdout(), job.stderr()]))
        error = rundirs.last_error_line(text)
        cancelled = _slurm_cancelled(job)
    else:
        cancelled = job.result().get("status") == "cancelled"
    state.ended(root, None if failure is not None else 0, error, cancelled)
    _say(state, ended_line(state))


def _slurm_cancelled(job) -> bool:
    from harness.campaign.slurm import CampaignSlurmJob, cancelled

    return isinstance(job, CampaignSlurmJob) and cancelled(job)


def wait_for(submitted: list, root: Path, save: Save) -> None:
    """Until every submitted job has ended (submitit's as_completed), settling each as it ends."""
    import submitit

    states = {id(job): state for state, job in submitted}
    for job in submitit.helpers.as_completed([job for _, job in submitted], poll_frequency=1):
        settle(states[id(job)], job, root)
        save()
