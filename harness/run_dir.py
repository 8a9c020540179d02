"""The run directory: created (or reused by a resume) on the main process and shared with the others, with the
checks that a resume continues the same run."""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Callable
from pathlib import Path

from accelerate import Accelerator
from accelerate.utils import (
    broadcast_object_list,
)

from harness.checkpoint import (
    CheckpointError,
    complete_checkpoints,
)
from harness.config import ConfigError
from harness.errors import RUN_ERRORS
from harness.plan import RunSpec
from harness.recipe_files import recipe_yaml
from harness.results import (
    atomic_write_json,
    atomic_write_text,
    new_run_dir,
)
from recipes import Recipe, Reference


def _normalised(recipe_dict: dict) -> dict:
    return json.loads(json.dumps(recipe_dict))


def _defaults(cls) -> dict:
    return _normalised({f.name: f.default for f in dataclasses.fields(cls) if f.default is not dataclasses.MISSING})


def _with_later_fields(saved: dict) -> dict:
    """A recipe saved before a field was added reads with that field at its default."""
    reference = saved.get("reference")
    if isinstance(reference, dict):
        saved = {**saved, "reference": {**_defaults(Reference), **reference}}
    return {**_defaults(Recipe), **saved}


def check_resumable(run_dir: Path, recipe: Recipe, seed: int, force: bool) -> None:
    """Refuse to continue a run with a different recipe or seed unless forced; refuse without a checkpoint."""
    saved = _with_later_fields(_normalised(json.loads((run_dir / "recipe.json").read_text())))
    now = _normalised(recipe.to_dict())
    diff = [f"{k}: {saved.get(k)} -> {now.get(k)}" for k in sorted(set(saved) | set(now)) if saved.get(k) != now.get(k)]
    saved_seed = json.loads((run_dir / "run.json").read_text()).get("seed")
    if saved_seed != seed:
        diff.append(f"seed: {saved_seed} -> {seed}")
    if diff and not force:
        raise ConfigError(f"--resume {run_dir} would change the run ({'; '.join(diff)}); add --force to accept")
    if not complete_checkpoints(run_dir):
        raise CheckpointError(f"{run_dir} has no complete checkpoint to resume from; start a new run instead")


def shared_run_dir(
    accelerator: Accelerator,
    spec: RunSpec,
    recipe: Recipe,
    label: str | None = None,
    before_writing: Callable[[Path], None] | None = None,
) -> Path:
    """The main process creates (or reuses) the run directory and tells the others where it is; `label` names a
    new one (default: the recipe's name). `before_writing(run_dir)` runs before any file is written there; if it
    raises, a directory created for this run is removed again and every process raises one ConfigError."""
    shared = [None, None]
    if accelerator.is_main_process:
        shared = _open_on_main(spec, recipe, label, before_writing)
    path, error = broadcast_object_list(shared)
    if error is not None:
        raise ConfigError(error)
    return Path(path)


def _open_on_main(spec: RunSpec, recipe: Recipe, label: str | None, before_writing) -> list:
    """[run directory, None], or [None, the error] once a directory created for the run is removed again."""
    created = None
    try:
        options = spec.options
        if options.resume is not None:
            run_dir = options.resume
        else:
            created = _first_missing(options.output)
            run_dir = new_run_dir(options.output, label or recipe.name, spec.dataset, spec.budget, options.seed)
            created = created or run_dir
        if before_writing is not None:
            before_writing(run_dir)
        if options.resume is None:
            atomic_write_json(run_dir / "run.json", options.saved())
        atomic_write_json(run_dir / "recipe.json", recipe.to_dict())
        atomic_write_text(run_dir / "recipe.yaml", recipe_yaml(recipe, spec.published_source))
    except RUN_ERRORS as e:  # reported on every process, so none waits for the others
        if created is not None:
            shutil.rmtree(created, ignore_errors=True)
        return [None, str(e)]
    return [str(run_dir), None]


def _first_missing(path: Path) -> Path | None:
    """The outermost directory of `path` that does not exist yet (None if it does)."""
    missing = None
    for candidate in [path, *path.parents]:
        if candidate.exists():
            break
        missing = candidate
    return missing
