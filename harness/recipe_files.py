"""Recipe files: a YAML or JSON mapping of recipe fields, resolved into the same validated Recipe as the registry.

    name: resnet18_rsb_a3            # required
    base: rsb_a3                     # optional: a registered recipe, or another file (relative to this one)
    summary: ...                     # inherited from the base when left out
    reference: {source: ..., dataset: imagenet, top1: 68.25, note: ...}
    notes: [...]
    model: resnet18                  # any other recipe field: what this file changes

A file that cites its own `reference` is a published setting of its own: its runs are compared with it. A file
without one is a variant of its base: its runs are compared with the base, and what it changes shows among the
run's differences (this is what `--dump-recipe` writes, so a dumped run re-runs and reports exactly as it was).

The `args.yaml` timm's train.py writes (or a train.py `-c` config) is read as a recipe too, recognised by its keys
(`harness.timm_args`): as `--recipe` or as a file's `base`. It has no published figure of its own; a file that takes
it as its base may add a `reference`. Its batch_size is per process: a `batch_size` on the command line (`--set`) or
in the file that takes it as its base settles the global batch it ran at.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from harness.config import ConfigError
from harness.timm_args import is_timm_args, recipe_from_timm_args
from recipes import Recipe, get_recipe, list_recipes
from recipes._base import did_you_mean, validation_message

SUFFIXES = (".yaml", ".yml", ".json")
FILE_ONLY_KEYS = ("base",)


@dataclass(frozen=True)
class Resolved:
    recipe: Recipe  # the recipe as the file (or the registry) defines it
    published: Recipe  # what its runs are compared with
    published_source: str  # registered name or absolute file path of `published`, for a dump's `base`
    path: Path | None = None  # the file the recipe came from
    notices: tuple[str, ...] = ()  # what reading a timm args file found (its batch, the flags it ignored)


def is_recipe_file(name: str) -> bool:
    return name.endswith(SUFFIXES) or "/" in name


def resolve(name: str, batch_size: int | None = None) -> Resolved:
    """A registered recipe by name, or a recipe file by path; ConfigError (one line) for anything wrong.
    `batch_size`: the global batch a timm args file (or one a file takes as its base) ran at."""
    if not is_recipe_file(name):
        try:
            recipe = get_recipe(name)
        except KeyError as e:
            raise ConfigError(e.args[0]) from None
        return Resolved(recipe, recipe, recipe.name)
    return _resolve_file(Path(name), seen=(), batch_size=batch_size)


def _resolve_file(path: Path, seen: tuple[Path, ...], batch_size: int | None = None) -> Resolved:
    path = path.resolve()
    if path in seen:
        raise ConfigError(f"recipe file {path} is its own base (through {', '.join(str(p) for p in seen)})")
    fields = _read_mapping(path)
    if is_timm_args(fields, path):
        recipe, notices = recipe_from_timm_args(fields, str(path), batch_size=batch_size)
        return Resolved(recipe, recipe, str(path), path, tuple(notices))
    unknown = sorted(set(fields) - set(FILE_ONLY_KEYS) - {f.name for f in dataclasses.fields(Recipe)})
    if unknown:
        valid = ", ".join([*FILE_ONLY_KEYS, *(f.name for f in dataclasses.fields(Recipe))])
        raise ConfigError(f"{path}: unknown field {', '.join(map(repr, unknown))}; valid fields: {valid}")
    if "name" not in fields:
        raise ConfigError(f"{path}: a recipe file needs a name")
    base_name = fields.pop("base", None)
    if batch_size is None and type(fields.get("batch_size")) is int:
        batch_size = fields["batch_size"]  # the global batch of a timm args file this file takes as its base
    base = _resolve_base(base_name, path, seen, batch_size) if base_name is not None else None
    try:
        recipe = dataclasses.replace(base.recipe, **fields) if base else Recipe(**fields)
    except ValidationError as e:
        raise ConfigError(f"{path}: {validation_message(e)}") from None
    notices = base.notices if base else ()
    if base is None or "reference" in fields:
        return Resolved(recipe, recipe, str(path), path, notices)
    return Resolved(recipe, base.published, base.published_source, path, notices)


def _resolve_base(base: Any, path: Path, seen: tuple[Path, ...], batch_size: int | None = None) -> Resolved:
    if not isinstance(base, str) or not base:
        raise ConfigError(f"{path}: base must be a registered recipe name or a recipe file path, got {base!r}")
    if is_recipe_file(base):
        base_path = (path.parent / base).expanduser()
        if not base_path.is_file():
            raise ConfigError(f"{path}: base {base} not found (looked for {base_path})")
        return _resolve_file(base_path, (*seen, path), batch_size)
    if base not in list_recipes() and base.replace("-", "_") not in list_recipes():
        hint = did_you_mean(base, list_recipes()) or f"registered recipes: {', '.join(list_recipes())}"
        raise ConfigError(
            f"{path}: base {base!r} is neither a registered recipe nor a file ending in {', '.join(SUFFIXES)}; {hint}"
        )
    return resolve(base)


def _read_mapping(path: Path) -> dict:
    if not path.is_file():
        raise ConfigError(f"recipe file {path} does not exist")
    if path.suffix not in SUFFIXES:
        raise ConfigError(f"recipe file {path} must end in {', '.join(SUFFIXES)}")
    text = path.read_text()
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path} is not valid JSON (line {e.lineno}: {e.msg})") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        problem = getattr(e, "problem", None) or type(e).__name__
        raise ConfigError(f"{path} is not valid YAML ({where}{problem})") from None
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path} must hold a mapping of recipe fields (name: ..., base: ...), got {type(data).__name__}"
        )
    return data


def recipe_mapping(recipe: Recipe, base: str) -> dict:
    """Every field of `recipe` as plain YAML/JSON values, as a variant of `base` (its reference is the base's)."""
    fields = json.loads(json.dumps(recipe.to_dict()))
    fields.pop("reference")
    return {"name": fields.pop("name"), "base": base, **fields}


def recipe_yaml(recipe: Recipe, base: str) -> str:
    return yaml.safe_dump(recipe_mapping(recipe, base), sort_keys=False, allow_unicode=True, width=120)


def recipe_files(folder: Path) -> list[Resolved]:
    """Every recipe file directly in `folder`, resolved (ConfigError for the first one that is wrong)."""
    if not folder.is_dir():
        raise ConfigError(f"--recipes-dir {folder} is not a directory")
    return [_resolve_file(p, seen=()) for p in sorted(folder.iterdir()) if p.suffix in SUFFIXES and p.is_file()]
