"""The runs of a campaign's grid: each one's folder name, key, and the harness/run.py options that start it.

A run's key (recipe, dataset, budget, seed, the campaign's `set` and the options that change what it computes)
identifies it across invocations; its id names its folder, CAMPAIGN_ROOT/runs/ID/, and carries a short hash of
`set` and `options` when the campaign has any.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.campaign.spec import Campaign
from harness.config import ConfigError
from harness.recipe_files import is_recipe_file, resolve

# Options that change how a run is carried out, not what it computes: left out of a run's key.
NON_KEY_OPTIONS = frozenset({"workers", "threads", "keep", "log_every", "save_every", "force", "download"})


@dataclass(frozen=True)
class GridRun:
    """One run of the grid: its folder name, its key and the harness/run.py options that start it."""

    id: str  # the folder CAMPAIGN_ROOT/runs/ID that is this run's --output
    key: dict  # recipe, dataset, budget, seed, overrides, options: what identifies the run across invocations
    argv: tuple[str, ...]  # harness/run.py options, without --output
    setting: str  # the run's setting without its seed: runs of one setting share an estimate

    def output(self, root: Path) -> Path:
        return root / "runs" / self.id


def _literal(value: Any) -> str:
    """A --set value: strings as typed (as on the command line), everything else as a Python literal."""
    if isinstance(value, str):
        return value
    return repr(tuple(value) if isinstance(value, list) else value)


def option_argv(options: dict[str, Any]) -> list[str]:
    """{workers: 0, deterministic: true} -> --workers 0 --deterministic (false and null leave an option out)."""
    argv: list[str] = []
    for key, value in options.items():
        flag = "--" + key.replace("_", "-")
        if value is True:
            argv.append(flag)
        elif value is not False and value is not None:
            argv += [flag, str(value)]
    return argv


def _digest(data: dict) -> str:
    return hashlib.sha1(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:8]


@dataclass(frozen=True)
class GridRecipe:
    given: str  # as the campaign file writes it
    arg: str  # what --recipe gets: the registered name, or the file's absolute path
    name: str
    dataset: str  # the recipe's own dataset


def grid_recipes(campaign: Campaign, path: Path) -> list[GridRecipe]:
    """Each recipe of the grid resolved as harness/run.py resolves it (files relative to the campaign file)."""
    recipes = []
    for given in campaign.grid.recipe:
        arg = str((path.parent / given).expanduser().resolve()) if is_recipe_file(given) else given
        try:
            resolved = resolve(arg)
        except ConfigError as e:
            raise ConfigError(f"{path}: grid.recipe {given!r}: {e}") from None
        recipes.append(GridRecipe(given, arg, resolved.recipe.name, resolved.recipe.dataset))
    names = [r.name for r in recipes]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ConfigError(f"{path}: grid.recipe lists more than one recipe named {twice[0]!r}; give each its own name")
    return recipes


def shared_argv(campaign: Campaign, path: Path) -> list[str]:
    """The options every run of the campaign gets."""
    argv = []
    if campaign.data_dir is not None:
        argv += ["--data-dir", str((path.parent / Path(campaign.data_dir).expanduser()).resolve())]
    for key, value in campaign.overrides.items():
        argv += ["--set", f"{key}={_literal(value)}"]
    if campaign.launch.micro_batch is not None:
        argv += ["--micro-batch", str(campaign.launch.micro_batch)]
    if campaign.log_with is not None:
        argv += ["--log-with", campaign.log_with, "--project", campaign.project or campaign.name]
    return argv + option_argv(campaign.options)


def expand_grid(campaign: Campaign, path: Path) -> list[GridRun]:
    """Every combination of the grid, seeds innermost, as the runs that start it."""
    key_options = {k: v for k, v in campaign.options.items() if k.replace("-", "_") not in NON_KEY_OPTIONS}
    changed = {"set": campaign.overrides, "options": key_options}
    suffix = f"-{_digest(changed)}" if campaign.overrides or key_options else ""
    launch = campaign.launch.model_dump()
    shared = shared_argv(campaign, path)
    runs = []
    for recipe in grid_recipes(campaign, path):
        for dataset in campaign.grid.dataset or [None]:
            for budget in campaign.grid.budget:
                setting = f"{recipe.name}-{dataset or recipe.dataset}-{budget}"
                for seed in campaign.grid.seed:
                    run_id = f"{setting}-seed{seed}{suffix}"
                    argv = ["--recipe", recipe.arg, "--seed", str(seed), "--budget", budget]
                    argv += ["--dataset", dataset] if dataset else []
                    argv += shared
                    key = {"recipe": recipe.given, "dataset": dataset or recipe.dataset, "budget": budget}
                    key |= {"seed": seed, "overrides": campaign.overrides, "options": key_options}
                    estimate_group = f"{setting}-{_digest({**changed, 'launch': launch})}"
                    runs.append(GridRun(run_id, key, tuple(argv), estimate_group))
    return runs
