"""The campaign file: a grid of runs (recipes x seeds x datasets x budgets), where they go and how they launch.

    name: rsb_ladder
    output: ../runs/rsb_ladder       # the campaign root, relative to this file
    executor: local                  # local | slurm | submitit-local
    grid:                            # every combination is one run
      recipe: [baseline, cosine, mixup_cutmix, rsb_a3]   # registered names or recipe files (relative to this file)
      seed: [0, 1, 2]
      dataset: [imagenet]            # left out: each recipe's own dataset
      budget: [full]
    set: {}                          # --set for every run
    options: {}                      # other harness/run.py options for every run, e.g. {workers: 8, save_every: 500}
    data_dir: /data/imagenet
    launch: {processes: 8, nodes: 1, micro_batch: null}
    slurm: {partition: gpu, time: "72:00:00", gpus_per_node: 8, cpus_per_task: 96, account: null, qos: null,
            constraint: null, extra: ["--mem=0"]}
    log_with: null                   # e.g. mlflow: every run in one experiment of CAMPAIGN_ROOT/mlflow.db
    project: null                    # the trackers' project / MLflow experiment (default: the campaign's name)

The file is validated with pydantic (strict types, unknown keys refused); each refusal is one line naming the key,
the value and what is valid.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from harness.config import BUDGETS, ConfigError
from recipes._base import validation_message

EXECUTORS = ("local", "slurm", "submitit-local")
SEED_MAX = 2**32 - 1
STRICT = ConfigDict(extra="forbid", strict=True)
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
# harness/run.py options the campaign sets itself, and the key of the campaign file that sets each.
CAMPAIGN_OPTIONS = {
    "recipe": "grid.recipe",
    "seed": "grid.seed",
    "seeds": "grid.seed",
    "dataset": "grid.dataset",
    "budget": "grid.budget",
    "data_dir": "data_dir",
    "set": "set",
    "output": "output (each run gets CAMPAIGN_ROOT/runs/RUN/)",
    "resume": "the campaign's state (unfinished runs resume by themselves)",
    "micro_batch": "launch.micro_batch",
    "log_with": "log_with",
    "project": "project",
    "estimate": "--plan",
}
# Flags the campaign fills in from its own keys and from SLURM's environment.
OWNED_SBATCH = frozenset(
    {"nodes", "ntasks-per-node", "gpus-per-node", "cpus-per-task", "partition", "time", "account", "qos"}
    | {"constraint", "output", "error", "signal", "job-name", "array", "open-mode", "wckey"}
)

NonEmpty = Annotated[str, Field(min_length=1)]
Name = Annotated[str, Field(pattern=NAME_PATTERN)]
Positive = Annotated[int, Field(gt=0)]


def _unique(values: list | None) -> list | None:
    if values is not None and len(set(values)) != len(values):
        raise ValueError("lists a value twice")
    return values


def slurm_minutes(value: int | str) -> int:
    """A SLURM time limit (minutes, MM:SS, HH:MM:SS, D-HH, D-HH:MM or D-HH:MM:SS) in whole minutes, rounded up."""
    if isinstance(value, int):
        if value <= 0:
            raise ValueError("must be a positive number of minutes, or a SLURM time such as 72:00:00")
        return value
    match = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", value.strip())
    if not match:
        raise ValueError("must be a SLURM time such as 72:00:00, 2-00:00:00 or a number of minutes")
    days, first, second, third = (int(g) if g is not None else None for g in match.groups())
    if days is not None:
        seconds = days * 86400 + first * 3600 + (second or 0) * 60 + (third or 0)
    elif third is not None:
        seconds = first * 3600 + second * 60 + third
    else:
        seconds = first * 60 + (second or 0)
    if seconds <= 0:
        raise ValueError("must be a positive time limit")
    return math.ceil(seconds / 60)


SlurmTime = Annotated[int | str, AfterValidator(slurm_minutes)]


def sbatch_flag(line: str) -> tuple[str, str | bool]:
    """`--mem=0`, `#SBATCH --exclusive`: the flag's name and value (True for a bare flag)."""
    match = re.fullmatch(r"(?:#SBATCH\s+)?--([a-z][a-z0-9-]*)(?:=(\S.*))?", line.strip())
    if not match:
        raise ValueError(f"{line!r} is not a long sbatch option such as --mem=0 or --exclusive")
    name, value = match.group(1), match.group(2)
    if name in OWNED_SBATCH:
        raise ValueError(f"{line!r}: --{name} is set by the campaign (slurm and launch keys)")
    return name, True if value is None else value


class Grid(BaseModel):
    model_config = STRICT

    recipe: Annotated[list[NonEmpty], Field(min_length=1), AfterValidator(_unique)]
    seed: Annotated[list[Annotated[int, Field(ge=0, le=SEED_MAX)]], Field(min_length=1), AfterValidator(_unique)] = [0]
    dataset: Annotated[list[NonEmpty] | None, Field(min_length=1), AfterValidator(_unique)] = None
    budget: Annotated[list[Literal[BUDGETS]], Field(min_length=1), AfterValidator(_unique)] = ["full"]


class Launch(BaseModel):
    model_config = STRICT

    processes: Positive = 1  # in all, over every node (accelerate's --num_processes)
    nodes: Positive = 1
    micro_batch: Positive | None = None

    @model_validator(mode="after")
    def _whole_nodes(self) -> Launch:
        if self.processes % self.nodes:
            raise ValueError(f"processes ({self.processes}) must be a multiple of nodes ({self.nodes})")
        return self

    @property
    def per_node(self) -> int:
        return self.processes // self.nodes


class Slurm(BaseModel):
    model_config = STRICT

    partition: NonEmpty | None = None
    time: SlurmTime | None = None
    gpus_per_node: Annotated[int, Field(ge=0)] | None = None
    cpus_per_task: Positive | None = None
    account: NonEmpty | None = None
    qos: NonEmpty | None = None
    constraint: NonEmpty | None = None
    extra: list[str] = []

    @field_validator("extra")
    @classmethod
    def _sbatch_lines(cls, lines: list[str]) -> list[str]:
        for line in lines:
            sbatch_flag(line)
        return lines

    def additional_parameters(self) -> dict[str, str | bool]:
        return dict(sbatch_flag(line) for line in self.extra)


class Campaign(BaseModel):
    model_config = STRICT

    name: Name
    output: NonEmpty | None = None
    executor: Literal[EXECUTORS] = "local"
    grid: Grid
    overrides: dict[str, Any] = Field(default={}, alias="set")
    options: dict[str, bool | int | float | str | None] = {}
    data_dir: NonEmpty | None = None
    launch: Launch = Launch()
    slurm: Slurm = Slurm()
    log_with: NonEmpty | None = None
    project: Name | None = None

    @field_validator("options")
    @classmethod
    def _free_options(cls, options: dict) -> dict:
        for key in options:
            if key.replace("-", "_") in CAMPAIGN_OPTIONS:
                raise ValueError(f"{key} is set by the campaign's {CAMPAIGN_OPTIONS[key.replace('-', '_')]}")
        return options

    @model_validator(mode="after")
    def _fits_the_executor(self) -> Campaign:
        if self.executor != "slurm" and self.launch.nodes > 1:
            raise ValueError(f"launch.nodes={self.launch.nodes}: executor {self.executor} runs on one machine")
        gpus = self.slurm.gpus_per_node
        if self.executor == "slurm" and gpus and gpus != self.launch.per_node:
            raise ValueError(
                f"slurm.gpus_per_node={gpus}: launch.processes ({self.launch.processes}) over launch.nodes "
                f"({self.launch.nodes}) is {self.launch.per_node} processes a node, one per GPU"
            )
        if self.executor == "slurm" and self.slurm.time is None:
            raise ValueError('slurm.time is required for executor slurm, e.g. time: "72:00:00"')
        return self


class _Loader(yaml.SafeLoader):
    """YAML without sexagesimal numbers: an unquoted 72:00:00 stays the time it reads as, not 259200."""


_Loader.yaml_implicit_resolvers = {k: list(v) for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()}
for _first in "+-0123456789":
    _Loader.yaml_implicit_resolvers.setdefault(_first, []).insert(
        0, ("tag:yaml.org,2002:str", re.compile(r"^[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?$"))
    )


def _message(error: ValidationError) -> str:
    """pydantic's errors in one line; an unknown key names the valid ones."""
    unknown = [e for e in error.errors(include_url=False) if e["type"] == "extra_forbidden"]
    if not unknown:
        return validation_message(error)
    loc = [str(p) for p in unknown[0]["loc"]]
    model = {"grid": Grid, "launch": Launch, "slurm": Slurm}.get(loc[0], Campaign) if len(loc) > 1 else Campaign
    valid = [f.alias or name for name, f in model.model_fields.items()]
    return f"unknown key {'.'.join(loc)!r}; valid keys{' in ' + loc[0] if len(loc) > 1 else ''}: {', '.join(valid)}"


def read_campaign(path: Path, executor: str | None = None) -> Campaign:
    """The validated campaign file (ConfigError, one line, for anything wrong); `executor` replaces its executor."""
    if not path.is_file():
        raise ConfigError(f"campaign file {path} does not exist")
    try:
        data = yaml.load(path.read_text(), Loader=_Loader)  # noqa: S506 - a SafeLoader
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        raise ConfigError(f"{path} is not valid YAML ({where}{getattr(e, 'problem', None) or e})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping (name: ..., grid: ...), got {type(data).__name__}")
    if executor is not None:
        data["executor"] = executor
    try:
        return Campaign.model_validate(data)
    except ValidationError as e:
        raise ConfigError(f"{path}: {_message(e)}") from None


def campaign_root(campaign: Campaign, path: Path, output: Path | None = None) -> Path:
    """Where the campaign writes: --output, else the file's `output` relative to the file, else runs/NAME there."""
    if output is not None:
        return output.absolute()
    return (path.parent / (campaign.output or f"runs/{campaign.name}")).resolve()
