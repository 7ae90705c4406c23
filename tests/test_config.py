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
