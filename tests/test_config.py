import tomllib
from dataclasses import fields
from pathlib import Path

import pytest

from topicli.config import Settings, default_config_text, load_settings
from topicli.errors import TopicliError


def test_default_text_lists_every_setting_with_a_comment_and_loads_back_to_defaults(tmp_path: Path) -> None:
    text = default_config_text()
    parsed = tomllib.loads(text)
    for section in fields(Settings):
        keys = {f.name for f in fields(section.default_factory)}
        assert set(parsed[section.name]) == keys
        for key in keys:
            line = next(i for i, line in enumerate(text.splitlines()) if line.startswith(f"{key} = "))
            assert text.splitlines()[line - 1].startswith("# ")
    path = tmp_path / "topicli.toml"
    path.write_text(text)
    assert load_settings(path, environ={}) == Settings()


def test_file_then_environment_then_options(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[clustering]\nmin_topics = 5\nmax_topics = 50\neps = 1\n")
    settings = load_settings(path, environ={"TOPICLI_CLUSTERING_MAX_TOPICS": "40"})
    assert (settings.clustering.min_topics, settings.clustering.max_topics) == (5, 40)
    assert settings.clustering.eps == 1.0 and isinstance(settings.clustering.eps, float)
    settings = load_settings(
        path,
        overrides={"clustering": {"max_topics": 30, "min_topics": None}},
        environ={"TOPICLI_CLUSTERING_MAX_TOPICS": "40"},
    )
    assert (settings.clustering.min_topics, settings.clustering.max_topics) == (5, 30)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[clustering]\nmin_topic = 5\n", "unknown setting [clustering] min_topic"),
        ("[clusterin]\nmin_topics = 5\n", "unknown section [clusterin]"),
        ('[clustering]\nmin_topics = "five"\n', "[clustering] min_topics must be int, got str"),
        ("[clustering]\nmin_topics = true\n", "[clustering] min_topics must be int, got bool"),
        ('[clustering]\nalgorithm = "kmeans"\n', "must be one of dbscan, hdbscan"),
        ("[labelling]\nfloor_quantile = 5\n", "[labelling] floor_quantile must be between 0.0 and 1.0, got 5.0"),
        ("[clustering\n", "not valid TOML"),
    ],
)
def test_bad_files_say_what_is_wrong(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(TopicliError, match=None) as error:
        load_settings(path, environ={})
    assert message in str(error.value)


def test_bad_environment_value_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(TopicliError, match="TOPICLI_LABELLING_K must be int"):
        load_settings(None, environ={"TOPICLI_LABELLING_K": "many"})
    with pytest.raises(TopicliError, match="topicli init"):
        load_settings(tmp_path / "nope.toml", environ={})


def numeric_settings() -> list[tuple[str, str, type, float, float]]:
    """(section, key, type, low, high) of every number setting, as declared."""
    found = []
    for section in fields(Settings):
        for f in fields(section.default_factory):
            if type(f.default) in (int, float):
                low, high = f.metadata["range"]
                found.append((section.name, f.name, type(f.default), low, high))
    return found


def test_every_number_has_a_range_holding_its_default() -> None:
    assert len(numeric_settings()) > 30
    for section, key, kind, low, high in numeric_settings():
        default = getattr(getattr(Settings(), section), key)
        assert low is not None and high is not None, f"[{section}] {key} declares no range"
        assert isinstance(low, kind) and isinstance(high, kind), f"[{section}] {key}: range of another type"
        assert low <= default <= high, f"[{section}] {key}"


@pytest.mark.parametrize(("section", "key", "kind", "low", "high"), numeric_settings())
def test_every_number_outside_its_range_is_refused_naming_it(
    tmp_path: Path, section: str, key: str, kind: type, low: float, high: float
) -> None:
    path = tmp_path / "c.toml"
    step = 1 if kind is int else 0.01
    bad = [low - step, high + step] + (["nan", "inf", "-inf"] if kind is float else [])
    for value in bad:
        path.write_text(f"[{section}]\n{key} = {value}\n")
        with pytest.raises(TopicliError) as error:
            load_settings(path, environ={})
        assert f"[{section}] {key} must be" in str(error.value) and str(low) in str(error.value)
    name = f"TOPICLI_{section}_{key}".upper()
    with pytest.raises(TopicliError, match=rf"environment variable {name}: \[{section}\] {key} must be between"):
        load_settings(None, environ={name: str(low - step)})
    with pytest.raises(TopicliError, match=rf"option: \[{section}\] {key} must be between"):
        load_settings(None, overrides={section: {key: kind(high + step)}}, environ={})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[clustering]\neps = nan\n", "[clustering] eps must be a finite number between 0.0 and 2.0, got nan"),
        ("[clustering]\neps = -1\n", "[clustering] eps must be between 0.0 and 2.0, got -1.0"),
        ("[clustering]\nmin_samples = -3\n", "[clustering] min_samples must be between 0 and"),
        ("[clustering]\neval_sample = 0\n", "[clustering] eval_sample must be between 1 and"),
        ("[clustering]\nmin_topics = -2\n", "[clustering] min_topics must be between 1 and"),
        ("[labelling]\nk = 0\n", "[labelling] k must be between 1 and"),
        ("[labelling]\nneighbours = -5\n", "[labelling] neighbours must be between 0 and"),
        ("[labelling]\nnoise_distance = -0.1\n", "[labelling] noise_distance must be between 0.0 and 2.0"),
        ("[serving]\nport = 99999\n", "[serving] port must be between 1 and 65535, got 99999"),
        (
            "[clustering]\nmin_topics = 50\nmax_topics = 20\n",
            "settings: [clustering] min_topics (50) is above max_topics (20); lower min_topics or raise max_topics",
        ),
        ("[infra]\ncompute_min_nodes = 3\ncompute_max_nodes = 2\n", "compute_min_nodes (3) is above compute_max_nodes"),
    ],
)
def test_bad_values_are_refused_at_load(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(TopicliError) as error:
        load_settings(path, environ={})
    assert message in str(error.value)


def test_min_topics_above_max_topics_across_sources_is_named(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[clustering]\nmin_topics = 50\n")
    with pytest.raises(TopicliError, match=r"min_topics \(50\) is above max_topics \(20\)"):
        load_settings(path, environ={"TOPICLI_CLUSTERING_MAX_TOPICS": "20"})
    assert load_settings(path, overrides={"clustering": {"max_topics": 50}}, environ={}).clustering.min_topics == 50


@pytest.mark.parametrize("section", ["labelling", "classifier"])
@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{foo} bad", "must hold the {topic} placeholder and no other field, but it has {foo}"),
        ("no placeholder", "must hold the {topic} placeholder"),
        ("about {topic} and {}", "but it has {}"),
        ("about {topic.title}", "but it has {topic.title}"),
        ("about {topic:d}", "does not format with a topic name"),
        ("about {topic} }", "is not a valid template"),
    ],
)
def test_topic_templates_need_exactly_the_topic_placeholder(
    tmp_path: Path, section: str, template: str, message: str
) -> None:
    path = tmp_path / "c.toml"
    path.write_text(f'[{section}]\ntopic_template = "{template}"\n')
    with pytest.raises(TopicliError) as error:
        load_settings(path, environ={})
    assert f"[{section}] topic_template " in str(error.value) and message in str(error.value)
    path.write_text(f'[{section}]\ntopic_template = "#{{topic}} {{{{not a field}}}}: {{topic}}"\n')
    assert getattr(load_settings(path, environ={}), section).topic_template == "#{topic} {{not a field}}: {topic}"
