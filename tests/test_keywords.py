"""c-TF-IDF keywords: what is frequent in one group and rare in the others, hashtags whole, stop words out."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

from topicli.method.keywords import keywords, stop_words, suggested_name
from topicli.method.languages import language_shares as languages

COFFEE = [
    "the best espresso in town, and the latte art is the best too #coffeetime",
    "a flat white and an espresso before the meeting #coffeetime",
    "cold brew or espresso? espresso, always https://example.com/brew",
    "new grinder for my espresso beans @barista.joe",
]
DOGS = [
    "the puppy learned to sit and the puppy got a treat #dogsofinstagram",
    "walk with the puppy in the park, the dog loved it",
    "our rescue dog and the new puppy are friends #dogsofinstagram",
    "the dog park at 7am, puppy zoomies",
]
GARDEN = [
    "tomatoes in the garden finally ripe #gardening",
    "repotting the basil and the tomatoes on the balcony",
    "the garden after the rain: tomatoes everywhere #gardening",
    "compost for the garden beds",
]


def groups_of(*sizes: int) -> np.ndarray:
    return np.concatenate([np.full(n, g) for g, n in enumerate(sizes)])


def test_each_group_gets_its_own_words_first_hashtags_whole_and_no_links_or_mentions() -> None:
    texts = [*COFFEE, *DOGS, *GARDEN]
    found = keywords(texts, groups_of(4, 4, 4), n=5)
    assert found[0][0] == "espresso" and found[1][0] == "puppy" and found[2][0] in ("garden", "tomatoes")
    assert "#coffeetime" in found[0] and "#dogsofinstagram" in found[1] and "#gardening" in found[2]
    every = {w for words in found.values() for w in words}
    assert not every & {"the", "and", "in", "https", "example", "com", "barista", "joe", "7am"}
    assert all(len(words) == 5 for words in found.values())


def test_a_word_every_group_uses_names_none_of_them() -> None:
    # "today" is in every group and not an English stop word: with enough groups it is dropped
    texts = [f"{t} today" for t in (*COFFEE, *DOGS, *GARDEN, "knitting a scarf today", "knitting socks today")]
    found = keywords(texts, groups_of(4, 4, 4, 2))
    assert all("today" not in words for words in found.values())
    assert found[3][0] == "knitting"


def test_stop_words_follow_the_languages_present() -> None:
    english = [*COFFEE, *DOGS]
    french = ["le chat dort sur le canapé toute la journée", "les enfants jouent dans le jardin avec le chien"] * 3
    assert max(languages(english).items(), key=lambda kv: kv[1])[0] == "en"
    assert stop_words(english) == ENGLISH_STOP_WORDS
    assert {"le", "dans", "avec"} <= stop_words(french) and "the" not in stop_words(french)
    assert "die" not in stop_words(english + french), "no German list without German posts: 'die' is English too"
    assert stop_words(["ทดสอบภาษาไทย สวัสดีครับ"] * 4) == frozenset(), "no list is guessed for other languages"
    assert languages(["", "  "]) == {}


def test_noise_and_empty_groups() -> None:
    assert keywords(["a b", "c"], np.array([-1, -1])) == {}
    assert keywords(["🎉", "!!"], np.array([0, 1])) == {0: [], 1: []}
    found = keywords([*COFFEE, "unrelated noise post"], np.array([0, 0, 0, 0, -1]))
    assert "unrelated" not in found[0]


def test_suggested_name_joins_the_first_keywords() -> None:
    assert suggested_name(["espresso", "latte", "#coffeetime", "beans"]) == "espresso · latte · #coffeetime"
    assert suggested_name([]) == ""


@pytest.mark.parametrize("n", [1, 3])
def test_at_most_n_keywords(n: int) -> None:
    found = keywords([*COFFEE, *DOGS], groups_of(4, 4), n=n)
    assert [len(w) for w in found.values()] == [n, n]
