"""experiments.yaml: schema, errors that name field and line, versioning of phases."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from feedlab.experiments.config import ConfigError, load_config, parse_config

SHIPPED = Path(__file__).parents[1] / "experiments" / "experiments.yaml"

GOOD = """\
default_model: control
experiments:
  - name: bert_vs_catboost
    status: running
    salt: "bert-vs-catboost-1"
    traffic: 100
    arms:
      - {name: control, model: control, weight: 50}
      - {name: test,    model: test,    weight: 50}
models:
  control: {backend: inprocess, artifact: artifacts/control}
  test:    {backend: http, url: "http://127.0.0.1:8100", timeout_ms: 150}
"""


def test_shipped_config_is_the_design_example() -> None:
    loaded = load_config(SHIPPED)
    cfg = loaded.config
    assert cfg.default_model == "control"
    (exp,) = cfg.experiments
    assert (exp.name, exp.status, exp.salt, exp.traffic) == (
        "bert_vs_catboost",
        "running",
        "bert-vs-catboost-1",
        100,
    )
    assert [(a.name, a.model, a.weight) for a in exp.arms] == [
        ("control", "control", 50),
        ("test", "test", 50),
    ]
    assert {n: m.backend for n, m in cfg.models.items()} == {
        "control": "inprocess",
        "test": "inprocess",
    }


def test_good_config_parses_both_backends() -> None:
    cfg = parse_config(GOOD).config
    assert cfg.models["test"].backend == "http"
    assert cfg.models["test"].timeout_ms == 150
    assert cfg.models["control"].artifact == "artifacts/control"


@pytest.mark.parametrize(
    ("old", "new", "field", "line"),
    [
        ("status: running", "status: live", "experiments[0].status", 4),
        ('salt: "bert-vs-catboost-1"', 'salt: ""', "experiments[0].salt", 5),
        ("traffic: 100", "traffic: 101", "experiments[0].traffic", 6),
        ("traffic: 100", "traffic: lots", "experiments[0].traffic", 6),
        (
            "model: test,    weight: 50",
            "model: test, weight: -1",
            "experiments[0].arms[1].weight",
            9,
        ),
        (
            "model: control, weight: 50",
            "model: nope, weight: 50",
            "experiments[0].arms[0].model",
            8,
        ),
        ("{name: test,", "{name: control,", "experiments[0].arms[1].name", 9),
        ("{name: test,", "{name: default,", "experiments[0].arms[1].name", 9),
        ("{name: test,", "{name: interleaved,", "experiments[0].arms[1].name", 9),
        ("model: test,    weight: 50", "model: test", "experiments[0].arms[1].weight", 9),
        ("traffic: 100", "traffic: 100\n    design: mixed", "experiments[0].design", 7),
        ("timeout_ms: 150", "timeout_ms: 0", "models.test.timeout_ms", 12),
        ('url: "http://127.0.0.1:8100"', 'url: "ftp://x"', "models.test.url", 12),
        ("backend: http", "backend: carrier-pigeon", "models.test", 12),
        ("default_model: control", "default_model: ghost", "default_model", 1),
        ("    salt:", "    colour: red\n    salt:", "experiments[0].colour", 5),
    ],
)
def test_every_error_names_field_and_line(old: str, new: str, field: str, line: int) -> None:
    text = GOOD.replace(old, new, 1)
    assert text != GOOD
    with pytest.raises(ConfigError) as info:
        parse_config(text, source="exp.yaml")
    issues = [(i.field, i.line) for i in info.value.issues]
    assert (field, line) in issues, info.value
    assert f"line {line}: {field}" in str(info.value)
    assert str(info.value).startswith("exp.yaml")


def test_all_errors_are_reported_at_once() -> None:
    text = GOOD.replace("status: running", "status: live").replace("traffic: 100", "traffic: -5")
    with pytest.raises(ConfigError) as info:
        parse_config(text)
    assert {i.field for i in info.value.issues} == {
        "experiments[0].status",
        "experiments[0].traffic",
    }


def test_yaml_syntax_error_has_a_line() -> None:
    text = GOOD.replace("arms:\n", "arms: [\n", 1)
    with pytest.raises(ConfigError) as info:
        parse_config(text)
    (issue,) = info.value.issues
    assert issue.line is not None and issue.line >= 7
    assert "YAML syntax" in issue.message


def test_duplicate_key_is_an_error_not_silently_last_wins() -> None:
    text = GOOD + "  test: {backend: inprocess}\n"
    with pytest.raises(ConfigError) as info:
        parse_config(text)
    assert ("models.test", 13) in [(i.field, i.line) for i in info.value.issues]


def test_not_a_mapping() -> None:
    with pytest.raises(ConfigError, match="mapping"):
        parse_config("- just\n- a list\n")


def test_version_is_a_phase_id() -> None:
    base = parse_config(GOOD).version
    relaid = "# a comment\n" + GOOD.replace(
        "{name: test,    model: test,", "{name: test, model: test,"
    )
    assert relaid != GOOD
    assert parse_config(relaid).version == base
    assert parse_config(GOOD.replace("catboost-1", "catboost-2")).version != base
    reweighted = GOOD.replace("model: test,    weight: 50", "model: test, weight: 30")
    assert parse_config(reweighted).version != base
    assert parse_config(GOOD).version == base


def test_schema_and_cross_reference_errors_come_in_one_report() -> None:
    text = GOOD.replace("model: test,    weight: 50", "model: test, weight: -1").replace(
        "model: control, weight: 50", "model: ghost, weight: 50"
    )
    with pytest.raises(ConfigError) as info:
        parse_config(text)
    assert [(i.field, i.line) for i in info.value.issues] == [
        ("experiments[0].arms[0].model", 8),
        ("experiments[0].arms[1].weight", 9),
    ]
    assert "'ghost' is not declared" in str(info.value)


INTERLEAVED = GOOD.replace("traffic: 100", "traffic: 100\n    design: interleaving")


def test_an_interleaving_experiment_takes_two_arms_with_no_or_equal_weights() -> None:
    (exp,) = parse_config(INTERLEAVED).config.experiments
    assert exp.design == "interleaving"
    unweighted = re.sub(r",\s*weight: 50", "", INTERLEAVED)
    assert [a.weight for a in parse_config(unweighted).config.experiments[0].arms] == [None, None]
    assert parse_config(GOOD).config.experiments[0].design == "ab"


@pytest.mark.parametrize(
    ("old", "new", "field", "line", "words"),
    [
        ("model: test,    weight: 50", "model: test, weight: 30", "arms[1].weight", 10, "equal"),
        ("model: control, weight: 50", "model: control", "arms[1].weight", 10, "absent"),
        ("model: test,    weight: 50", "model: test", "arms[0].weight", 9, "absent"),
        (
            "      - {name: test,",
            "      - {name: third, model: test}\n      - {name: test,",
            "arms",
            8,
            "exactly two arms",
        ),
    ],
)
def test_interleaving_errors_name_field_and_line(
    old: str, new: str, field: str, line: int, words: str
) -> None:
    text = INTERLEAVED.replace(old, new, 1)
    assert text != INTERLEAVED
    with pytest.raises(ConfigError) as info:
        parse_config(text)
    (issue,) = info.value.issues
    assert (issue.field, issue.line) == (f"experiments[0].{field}", line), info.value
    assert words in issue.message


def test_design_and_absent_weights_leave_existing_versions_alone() -> None:
    """The AB default is left out of the hash: configs stored before `design` keep their phase."""
    assert parse_config(GOOD).version == "f2c3e12b26c83c15"  # its version before `design`
    explicit = GOOD.replace("traffic: 100", "traffic: 100\n    design: ab")
    assert parse_config(explicit).version == parse_config(GOOD).version
    assert parse_config(INTERLEAVED).version != parse_config(GOOD).version


ARMS_END = "      - {name: test,    model: test,    weight: 50}\n"
QA = GOOD.replace(ARMS_END, ARMS_END + "    qa_users: {control: [1, 2], test: [3]}\n")


def test_qa_users_force_arms_and_make_a_new_version() -> None:
    loaded = parse_config(QA)
    assert loaded.config.experiments[0].qa_users == {"control": [1, 2], "test": [3]}
    assert loaded.version != parse_config(GOOD).version


@pytest.mark.parametrize(
    ("new", "field", "line", "message"),
    [
        ("{control: [1, 2], ghost: [3]}", "experiments[0].qa_users.ghost", 10, "no arm named"),
        ("{control: [1, 2], test: [2]}", "experiments[0].qa_users.test[0]", 10, "user 2 is"),
        ("{control: [one]}", "experiments[0].qa_users.control[0]", 10, "integer"),
        ("[1, 2]", "experiments[0].qa_users", 10, "dictionary"),
    ],
)
def test_qa_user_errors_name_field_and_line(new: str, field: str, line: int, message: str) -> None:
    text = QA.replace("{control: [1, 2], test: [3]}", new)
    with pytest.raises(ConfigError) as info:
        parse_config(text, source="exp.yaml")
    found = {(i.field, i.line): i.message for i in info.value.issues}
    assert (field, line) in found, info.value
    assert message in found[(field, line)]


def test_a_qa_user_is_listed_once_in_the_file() -> None:
    second = (
        "  - name: other\n    status: running\n    salt: o\n    traffic: 100\n"
        "    arms: [{name: a, model: control, weight: 1}]\n    qa_users: {a: [3]}\n"
    )
    text = QA.replace("models:\n", second + "models:\n")
    with pytest.raises(ConfigError) as info:
        parse_config(text, source="exp.yaml")
    (issue,) = info.value.issues
    assert (issue.field, issue.line) == ("experiments[1].qa_users.a[0]", 16)
    assert "already a QA user of experiment 'bert_vs_catboost', arm 'test'" in issue.message


def test_qa_users_need_an_ab_design() -> None:
    text = (
        QA.replace("traffic: 100", "traffic: 100\n    design: interleaving")
        .replace(", weight: 50", "")
        .replace(",    weight: 50", "")
    )
    with pytest.raises(ConfigError) as info:
        parse_config(text, source="exp.yaml")
    assert [(i.field, i.line) for i in info.value.issues] == [("experiments[0].qa_users", 11)]
