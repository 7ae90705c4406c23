"""Hashtags as a second view of a post: found, split into words, blended beside the caption's scores."""

import numpy as np

from topicli.method.hashtags import blend, hashtag_text, hashtag_view, hashtags, split_tag


def test_tags_are_found_once_and_not_inside_words_or_entities() -> None:
    text = "Sunset #BeachLife at Joe's &#39;cafe&#39; a#b #beachlife #BeachLife"
    assert hashtags(text) == ["BeachLife", "beachlife"]


def test_split_camel_case_underscores_digits_and_accents() -> None:
    assert split_tag("NationalParkWeek") == ["national", "park", "week"]
    assert split_tag("hiking_life") == ["hiking", "life"]
    assert split_tag("NYCMarathon2019") == ["nyc", "marathon", "2019"]
    assert split_tag("ÉtéParis") == ["été", "paris"]
    assert split_tag("tbt") == ["tbt"]


def test_hashtag_text_and_view() -> None:
    texts = ["Great game! #WorldCup #football_fans", "no tags here", "#中文 only"]
    views, has = hashtag_view(texts)
    assert views == ["world cup football fans", "", "中文"]
    assert has.tolist() == [True, False, True]
    assert hashtag_text("") == ""


def test_blend_adds_the_weighted_tag_scores_only_where_a_post_has_tags() -> None:
    caption = np.array([[0.2, 0.5], [0.4, 0.1]])
    tags = np.array([[0.6, 0.1], [0.9, 0.9]])
    out = blend(caption, tags, np.array([True, False]), 1.0)
    np.testing.assert_allclose(out, [[0.8, 0.6], [0.4, 0.1]])
    assert np.argmax(out[0]) != np.argmax(caption[0])  # the tags can move a post's topic
