"""The schema of `experiments.yaml` and its loader.

People edit this file, so every error names the field *and* the YAML line it sits on: the text
is composed into a node tree first (PyYAML keeps a mark per node) and each pydantic error's
location is mapped back to the nearest node that exists.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Final, Literal

import yaml
from feedlab.models.registry import BASELINES
from pydantic import BaseModel, ConfigDict, Field, ValidationError

DEFAULT_CONFIG = Path("experiments") / "experiments.yaml"
"""The live config `feedlab serve` and `feedlab assign` use unless given --config: relative to
the working directory (the repository or the deployment's folder), never the copy installed
with the package, which nobody edits."""

BUILTIN_MODELS = BASELINES
"""Models that need no entry under `models:` (popular is also the cold-start/fallback model)."""

DEFAULT_GROUP = "default"

Loc = tuple[str | int, ...]
"""Where a value sits in the YAML: keys and list indices from the root."""
"""`exp_group` of a user outside every running experiment; no arm may use this name."""

INTERLEAVED_GROUP = "interleaved"
"""`exp_group` of every user an interleaving experiment takes (each sees both arms merged);
no arm may use this name."""

AB: Final = "ab"
INTERLEAVING: Final = "interleaving"

Name = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Arm(_Strict):
    name: Name
    model: Name
    weight: Annotated[float, Field(gt=0)] | None = None
    """Required by `design: ab`; an interleaving experiment shows every user both arms."""


DecisionMetric = Literal["hitrate", "like_rate", "like_rate_user", "likes_per_user", "converted"]
"""The metrics `feedlab analyze` reports; the experiment's `primary_metric` is one of them."""

DEFAULT_DECISION_METRIC: DecisionMetric = "hitrate"


class Experiment(_Strict):
    name: Name
    status: Literal["draft", "running", "stopped"]
    salt: Annotated[str, Field(min_length=1)]
    traffic: Annotated[float, Field(ge=0, le=100)]
    arms: Annotated[list[Arm], Field(min_length=1)]
    design: Literal["ab", "interleaving"] = AB
    primary_metric: DecisionMetric = DEFAULT_DECISION_METRIC
    """The decision metric: tested at full alpha; the other metrics are secondary."""
    qa_users: dict[Name, list[int]] = {}
    """Force rules for QA: arm name -> user ids served that arm while the experiment runs,
    whatever their hash says; their exposures are marked QA and never analysed."""


class InprocessModel(_Strict):
    backend: Literal["inprocess"]
    artifact: str | None = None


class HttpModel(_Strict):
    backend: Literal["http"]
    url: Annotated[str, Field(pattern=r"^https?://\S+$")]
    timeout_ms: Annotated[int, Field(gt=0, le=60_000)] = 150


ModelSpec = Annotated[InprocessModel | HttpModel, Field(discriminator="backend")]


class ExperimentsConfig(_Strict):
    default_model: Name
    experiments: list[Experiment] = []
    models: dict[Name, ModelSpec] = {}

    def model_spec(self, name: str) -> InprocessModel | HttpModel:
        """The spec of a model; built-ins not listed under `models:` run in process."""
        return self.models.get(name) or InprocessModel(backend="inprocess")

    def model_names(self) -> set[str]:
        """Every model a running experiment or the default can route to."""
        names = {self.default_model}
        for exp in self.experiments:
            if exp.status == "running":
                names.update(arm.model for arm in exp.arms)
        return names


@dataclass(frozen=True)
class ConfigIssue:
    """One problem in the file: dotted field path, 1-based line (None if unknown), message."""

    field: str
    line: int | None
    message: str

    def __str__(self) -> str:
        where = f"line {self.line}" if self.line else "line ?"
        return f"{where}: {self.field or '<file>'}: {self.message}"


class ConfigError(ValueError):
    """The file is invalid; `issues` lists every problem found, each with field and line."""

    def __init__(self, source: str, issues: list[ConfigIssue]):
        self.source = source
        self.issues = issues
        super().__init__(f"{source}: invalid experiments config\n" + "\n".join(map(str, issues)))


@dataclass(frozen=True)
class LoadedConfig:
    """A validated config with the text it came from and its version (a content hash)."""

    config: ExperimentsConfig
    text: str
    version: str
    source: str
    lines: dict[Loc, int]

    def issue(self, loc: Loc, message: str) -> ConfigIssue:
        """An issue about field `loc` of this file, with its line (for checks made later,
        e.g. a model that fails to load)."""
        return ConfigIssue(_dotted(loc), _line_of(loc, self.lines), message)


def config_version(config: ExperimentsConfig) -> str:
    """Hash of the validated content: comment or layout edits keep the version (and phase);
    any change of salt, weights, traffic, status, arms, primary metric or models makes a new
    one."""
    data = config.model_dump(mode="json")
    for exp in data["experiments"]:
        # fields added after the first release are left out at their defaults, so the configs
        # stored before them keep their version (and phase)
        if exp["design"] == AB:
            del exp["design"]
        if exp["primary_metric"] == DEFAULT_DECISION_METRIC:
            del exp["primary_metric"]
        if not exp["qa_users"]:
            del exp["qa_users"]
        for arm in exp["arms"]:
            if arm["weight"] is None:
                del arm["weight"]
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def load_config(path: str | Path) -> LoadedConfig:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(str(path), [ConfigIssue("", None, f"cannot read file: {exc}")]) from exc
    return parse_config(text, source=str(path))


def parse_config(text: str, source: str = "<string>") -> LoadedConfig:
    """Validate `text`; raise ConfigError listing every problem with its field and line."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        raise ConfigError(source, [ConfigIssue("", line, f"YAML syntax: {exc.problem}")]) from exc
    except yaml.YAMLError as exc:
        raise ConfigError(source, [ConfigIssue("", None, f"YAML: {exc}")]) from exc
    lines: dict[Loc, int] = {}
    issues: list[ConfigIssue] = []
    if root is not None:
        _index_lines(root, (), lines, issues)
    if not isinstance(data, dict):
        issues.append(ConfigIssue("", 1, "the file must be a mapping with default_model, ..."))
        raise ConfigError(source, issues)
    issues.extend(_cross_checks(data, lines))
    try:
        config = ExperimentsConfig.model_validate(data)
    except ValidationError as exc:
        schema = [
            ConfigIssue(_dotted(loc), _line_of(loc, lines), err["msg"])
            for err in exc.errors()
            for loc in [_strip_union_tags(tuple(err["loc"]), data)]
        ]
        issues = sorted([*issues, *schema], key=lambda i: (i.line or 0, i.field))
        raise ConfigError(source, issues) from None
    if issues:
        raise ConfigError(source, issues)
    return LoadedConfig(config, text, config_version(config), source, lines)


def _cross_checks(data: dict[str, Any], lines: dict[Loc, int]) -> list[ConfigIssue]:
    """Rules that span fields (names unique, every referenced model declared), checked on the
    raw mapping so they are reported together with the schema's errors; a part of the wrong
    shape is skipped here (the schema reports it)."""
    issues: list[ConfigIssue] = []

    def add(loc: Loc, message: str) -> None:
        issues.append(ConfigIssue(_dotted(loc), _line_of(loc, lines), message))

    models = data.get("models", {})
    known = set(BUILTIN_MODELS) | (set(models) if isinstance(models, dict) else set())
    check_models = isinstance(models, dict)

    def undeclared(model: object) -> bool:
        return check_models and isinstance(model, str) and model not in known

    if undeclared(data.get("default_model")):
        add(("default_model",), f"model {data['default_model']!r} is not declared under models")
    experiments = data.get("experiments")
    seen_exp: set[str] = set()
    qa_seen: dict[object, str] = {}
    for i, exp in enumerate(experiments if isinstance(experiments, list) else []):
        if not isinstance(exp, dict):
            continue
        name = exp.get("name")
        if isinstance(name, str):
            if name in seen_exp:
                add(("experiments", i, "name"), f"duplicate experiment name {name!r}")
            seen_exp.add(name)
        arms = exp.get("arms")
        seen_arm: set[str] = set()
        for j, arm in enumerate(arms if isinstance(arms, list) else []):
            if not isinstance(arm, dict):
                continue
            loc = ("experiments", i, "arms", j)
            arm_name = arm.get("name")
            if arm_name == DEFAULT_GROUP:
                add((*loc, "name"), f"arm name {DEFAULT_GROUP!r} is reserved for non-participants")
            if arm_name == INTERLEAVED_GROUP:
                add((*loc, "name"), f"arm name {INTERLEAVED_GROUP!r} is reserved for interleaving")
            if exp.get("design", AB) == AB and arm.get("weight") is None:
                add((*loc, "weight"), "Field required (design ab splits users by weight)")
            if isinstance(arm_name, str):
                if arm_name in seen_arm:
                    add((*loc, "name"), f"duplicate arm name {arm_name!r}")
                seen_arm.add(arm_name)
            if undeclared(arm.get("model")):
                add((*loc, "model"), f"model {arm['model']!r} is not declared under models")
        if exp.get("design") == INTERLEAVING and isinstance(arms, list):
            issues.extend(_interleaving_checks(arms, ("experiments", i), lines))
        if isinstance(exp.get("qa_users"), dict):
            where = f"experiment {name!r}"
            issues.extend(_qa_checks(exp, seen_arm, where, qa_seen, ("experiments", i), lines))
    return issues


def _qa_checks(
    exp: dict[str, Any],
    arms: set[str],
    where: str,
    seen: dict[object, str],
    loc: Loc,
    lines: dict[Loc, int],
) -> list[ConfigIssue]:
    """Force rules name an arm of their own A/B experiment, and a QA user is listed once in
    the file, so its arm never depends on the order of the experiments (`seen`: user -> where
    it was listed first)."""
    issues: list[ConfigIssue] = []
    qloc = (*loc, "qa_users")
    if exp.get("design", AB) != AB:
        message = "qa_users needs design ab (interleaving shows every user both arms)"
        return [ConfigIssue(_dotted(qloc), _line_of(qloc, lines), message)]
    for arm, users in exp["qa_users"].items():
        if arm not in arms:
            message = f"no arm named {arm!r} in this experiment (arms: {sorted(arms)})"
            aloc = (*qloc, arm)
            issues.append(ConfigIssue(_dotted(aloc), _line_of(aloc, lines), message))
        for k, user in enumerate(users if isinstance(users, list) else []):
            if not isinstance(user, int):
                continue  # the schema reports it
            if user in seen:
                uloc = (*qloc, arm, k)
                message = f"user {user} is already a QA user of {seen[user]}"
                issues.append(ConfigIssue(_dotted(uloc), _line_of(uloc, lines), message))
            seen.setdefault(user, f"{where}, arm {arm!r}")
    return issues


def _interleaving_checks(arms: list[Any], loc: Loc, lines: dict[Loc, int]) -> list[ConfigIssue]:
    """Interleaving merges exactly two rankings for every user, so there is no split to weigh."""
    if len(arms) != 2:
        message = f"design interleaving needs exactly two arms (control, test), got {len(arms)}"
        return [ConfigIssue(_dotted((*loc, "arms")), _line_of((*loc, "arms"), lines), message)]
    weights = [arm.get("weight") if isinstance(arm, dict) else None for arm in arms]
    if weights[0] == weights[1]:  # both absent or both equal
        return []
    j = 0 if weights[1] is None else 1  # the arm whose weight stands out
    wloc = (*loc, "arms", j, "weight")
    message = "design interleaving: weights must be absent or equal (every user sees both arms)"
    return [ConfigIssue(_dotted(wloc), _line_of(wloc, lines), message)]


def _index_lines(
    node: yaml.Node, path: Loc, out: dict[Loc, int], issues: list[ConfigIssue]
) -> None:
    """Record the 1-based line of every node by its path; flag duplicate mapping keys, which
    PyYAML would otherwise silently resolve to the last one."""
    out[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        seen: set[object] = set()
        for key_node, value_node in node.value:
            key = key_node.value
            if key in seen:
                issues.append(
                    ConfigIssue(
                        _dotted((*path, key)), key_node.start_mark.line + 1, "duplicate key"
                    )
                )
            seen.add(key)
            _index_lines(value_node, (*path, key), out, issues)
            out[(*path, key)] = key_node.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _index_lines(item, (*path, i), out, issues)


def _strip_union_tags(loc: Loc, data: dict[str, Any]) -> Loc:
    """Drop the discriminator tag pydantic inserts into union locations (models.x.http.url)."""
    if len(loc) >= 3 and loc[0] == "models" and loc[2] in ("inprocess", "http"):
        spec = data.get("models", {}).get(loc[1]) if isinstance(data.get("models"), dict) else None
        if not (isinstance(spec, dict) and loc[2] in spec):
            return (*loc[:2], *loc[3:])
    return loc


def _line_of(loc: Loc, lines: dict[Loc, int]) -> int | None:
    for end in range(len(loc), -1, -1):
        line = lines.get(tuple(loc[:end]))
        if line is not None:
            return line
    return None


def _dotted(loc: Loc) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out
