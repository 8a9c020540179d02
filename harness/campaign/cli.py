"""Run a campaign's grid of runs, resume what is unfinished, report on it.

`recipe-harness-campaign FILE.yaml`, or `python -m harness.campaign FILE.yaml`:

    python -m harness.campaign campaigns/rsb_ladder.yaml --plan          # every run, device-hours, wall time
    python -m harness.campaign campaigns/rsb_ladder.yaml                 # run (again: resume, skip what is done)
    python -m harness.campaign campaigns/rsb_ladder.yaml --retry-failed  # also run the failed runs again
    python -m harness.campaign campaigns/rsb_ladder.yaml --report        # report.md, comparison.png, results.csv

Exit status: 0 when every run is done (slurm: every job submitted or still running), 1 when a run failed, 2 for a
refused campaign file (nothing is started, submitted or written), 3 when a signal stopped the campaign or a run's
job was cancelled (run the command again to resume).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path

from harness.campaign import checks, executors, grid, plan, spec, summary
from harness.campaign.runtime import reconcile, run_env
from harness.campaign.state import Lock, RunState, merge, read_state, write_state
from harness.config import ConfigError
from harness.options import OneLineErrorParser

EXIT_FAILED, EXIT_REFUSED, EXIT_STOPPED = 1, 2, 3


def build_parser() -> argparse.ArgumentParser:
    p = OneLineErrorParser(prog="recipe-harness-campaign", description=__doc__.splitlines()[0])
    p.add_argument("file", type=Path, help="the campaign file (YAML)")
    p.add_argument("--plan", action="store_true", help="list every run with its estimated time; train nothing")
    p.add_argument("--report", action="store_true", help="write the report over the finished runs and exit")
    p.add_argument("--retry-failed", action="store_true", help="run the failed runs again (from their checkpoint)")
    p.add_argument("--executor", choices=spec.EXECUTORS, help="run with this executor instead of the file's")
    p.add_argument("--output", type=Path, help="campaign root (default: the file's output, relative to the file)")
    p.add_argument("--wait", action="store_true", help="slurm: wait for the jobs to end, then report")
    return p


@dataclass
class Setup:
    campaign: spec.Campaign
    path: Path
    root: Path
    specs: list[grid.GridRun]
    states: list[RunState]
    warnings: list[str] = field(default_factory=list)

    def save(self) -> None:
        header = {"name": self.campaign.name, "file": str(self.path.resolve()), "executor": self.campaign.executor}
        write_state(self.root, header, self.states)


def prepare(args: argparse.Namespace) -> Setup:
    """Read and check everything before anything starts: the file, the executor, every run's plan, the root."""
    campaign = spec.read_campaign(args.file, args.executor)
    root = spec.campaign_root(campaign, args.file, args.output)
    specs = grid.expand_grid(campaign, args.file)
    warnings = []
    if not args.report:
        checks.check_executor(campaign)
        warnings = plan.time_limit_notes(campaign, plan.startup_s(plan.kept_estimates(campaign, root, specs)))
        checks.check_writable(root)
        checks.plan_runs(specs, root, campaign.launch.processes, estimate=args.plan)
    return Setup(campaign, args.file, root, specs, merge(specs, read_state(root)), warnings)


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        setup = prepare(args)
    except SystemExit as e:
        if isinstance(e.code, str):
            print(e.code, file=sys.stderr)
            return EXIT_REFUSED
        raise
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_REFUSED
    if args.report:
        return report_only(setup)
    if args.plan:
        return show_plan(setup)
    return run(setup, args.retry_failed, args.wait)


def report_only(setup: Setup) -> int:
    if not setup.root.is_dir():
        print(f"error: {setup.root} does not exist: the campaign has not run yet", file=sys.stderr)
        return EXIT_REFUSED
    for state in setup.states:
        if state.status != "running":
            state.observe(setup.root)
    written = summary.write_campaign_report(setup.campaign, setup.path, setup.root, setup.states)
    summary.print_summary(setup.states)
    print("report: " + ", ".join(map(str, written)))
    return 0


def show_plan(setup: Setup) -> int:
    campaign, root = setup.campaign, setup.root
    settings = list({s.setting: s for s in setup.specs}.values())
    notes = _refusal_here(setup)
    root.mkdir(parents=True, exist_ok=True)
    with Lock(root):
        estimates = plan.run_estimates(campaign, root, settings, run_env(campaign, root, trackers=False))
    notes += [
        f"{setting}: timed on random images of {e['dataset']}'s shape and size ({e['dataset']} is not on this machine)"
        for setting, e in estimates.items()
        if isinstance(e, dict) and e.get("synthetic_data")
    ]
    start_s = plan.startup_s(estimates)
    try:
        notes += plan.time_limit_notes(campaign, start_s)
    except ConfigError as e:
        notes.append(f"submitting this campaign would be refused: {e}")
    frame = plan.plan_frame(setup.specs, setup.states, estimates)
    plan.print_plan(campaign, setup.path, root, frame, notes, start_s)
    return 0


def _refusal_here(setup: Setup) -> list[str]:
    """Estimates time absent datasets on synthetic images; say when training here would be refused."""
    try:
        checks.plan_runs(setup.specs, setup.root, setup.campaign.launch.processes)
    except ConfigError as e:
        return [f"running this campaign on this machine would be refused: {e}"]
    return []


def run(setup: Setup, retry_failed: bool, wait: bool) -> int:
    campaign, root = setup.campaign, setup.root
    for warning in setup.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    root.mkdir(parents=True, exist_ok=True)
    with Lock(root):
        still_running = reconcile(campaign, root, setup.states)
        setup.save()
        todo = [
            (s, state)
            for s, state in zip(setup.specs, setup.states, strict=True)
            if state.status in ("planned", "preempted", "cancelled") or (retry_failed and state.status == "failed")
        ]
        print(f"campaign {campaign.name}: {len(todo)} of {len(setup.states)} runs to start ({campaign.executor})")
        env = run_env(campaign, root)
        stopped = False
        if campaign.executor == "local":
            stopped = executors.run_locally(campaign, root, todo, env, setup.save)
        else:
            try:
                submitted = executors.submit(campaign, root, todo, env, setup.save)
                if campaign.executor == "submitit-local" or wait:
                    executors.wait_for(submitted + still_running, root, setup.save)
            except KeyboardInterrupt:  # the jobs go on without this command
                stopped = True
            except ConfigError as e:  # sbatch refused a job: the ones submitted before it are recorded
                setup.save()
                print(f"error: {e}", file=sys.stderr)
                return EXIT_REFUSED
        setup.save()
        return finish(setup, stopped)


def finish(setup: Setup, stopped: bool) -> int:
    states = setup.states
    summary.print_summary(states)
    if all(s.status in ("done", "failed") for s in states):
        written = summary.write_campaign_report(setup.campaign, setup.path, setup.root, states)
        print("report: " + ", ".join(map(str, written)))
    elif not stopped and any(s.status not in ("done", "failed", "cancelled") for s in states):
        print("runs still to end: run the same command again to collect them and write the report")
    cancelled = sum(s.status == "cancelled" for s in states)
    if cancelled:
        print(f"{cancelled} run(s) cancelled: run the same command again to resume them")
    if stopped:
        print("stopped: run the same command again to resume the stopped runs and collect the jobs still running")
        return EXIT_STOPPED
    if any(s.status == "failed" for s in states):
        return EXIT_FAILED
    return EXIT_STOPPED if cancelled else 0
