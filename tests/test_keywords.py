"""c-TF-IDF keywords: what is frequent in one group and rare in the others, each in two or more of its posts,
hashtags whole, function words of every language present out; on hand-made groups and on real posts."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
import stop_words as stop_lists
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

from topicli.method.keywords import KEYWORDS, MIN_POSTS, keywords, stop_words, suggested_name
from topicli.method.languages import language_shares as languages

from .conftest import EXAMPLES, needs_data

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
    assert "best" not in found[0], "said twice, but in one post only: that post's word, not the group's"
    assert found[0] == ["espresso", "#coffeetime"], "two words are in two or more coffee posts: no padding"


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


@pytest.mark.parametrize("n", [1, 2])
def test_at_most_n_keywords(n: int) -> None:
    found = keywords([*COFFEE, *DOGS], groups_of(4, 4), n=n)
    assert [len(w) for w in found.values()] == [n, n]


# Real posts.


def in_posts(word: str, texts: list[str]) -> int:
    """Independently of the library: in how many of `texts` `word` is a whole token (a hashtag with its #)."""
    pattern = re.compile(rf"(?<![\w#]){re.escape(word)}(?!\w)", re.IGNORECASE)
    return sum(bool(pattern.search(text)) for text in texts)


def test_the_examples_keywords_are_earned_not_padded() -> None:
    # before: short lists were filled with one-post words in alphabetical order ("absolute, arrivée, automatic")
    frame = pd.read_csv(EXAMPLES, dtype=str, keep_default_na=False)
    codes, names = pd.factorize(frame["intended_topic"])
    texts = frame["caption"].tolist()
    found = keywords(texts, codes)
    for g, words in found.items():
        mine = [t for t, c in zip(texts, codes, strict=True) if c == g]
        assert all(in_posts(w, mine) >= MIN_POSTS for w in words), (names[g], words)
    assert sum(len(w) < KEYWORDS for w in found.values()) > len(found) / 2, "few posts a topic: fewer keywords"
    assert found[list(names).index("Running")][0] == "running"


def sib200_mix(languages: dict[str, str], rows: int = 30) -> pd.DataFrame:
    frames = [
        pd.read_csv(needs_data("eval", "sib200", folder, "dev.tsv"), sep="\t", dtype=str, keep_default_na=False)
        .head(rows)
        .assign(lang=code)
        for folder, code in languages.items()
    ]
    return pd.concat(frames, ignore_index=True)


MIX = {
    "eng_Latn": "en", "spa_Latn": "es", "fra_Latn": "fr", "deu_Latn": "de", "por_Latn": "pt", "ita_Latn": "it",
    "nld_Latn": "nl", "pol_Latn": "pl", "tur_Latn": "tr", "ind_Latn": "id",
}  # fmt: skip


def test_no_function_word_of_any_language_present_on_real_sentences() -> None:
    # ten languages of SIB-200, 30 sentences each, grouped by topic; before: Polish "że", Indonesian "anda"
    mix = sib200_mix(MIX)
    codes, _ = pd.factorize(mix["category"])
    found = keywords(mix["text"].tolist(), codes)
    function_words = set(ENGLISH_STOP_WORDS)
    for code in set(MIX.values()) - {"en"}:
        function_words |= {w.casefold() for w in stop_lists.get_stop_words(code)}
    every = [w for words in found.values() for w in words]
    assert len(every) >= 5 * len(found) and not set(every) & function_words, set(every) & function_words


def test_hashtags_stay_whole_on_real_captions() -> None:
    folder = needs_data("eval", "instagram_dev")
    captions = pd.read_json(folder / "captions.jsonl", lines=True)
    labels = pd.read_json(folder / "labels.jsonl", lines=True)
    posts = captions.merge(labels, on="id")
    posts = posts[posts["topics"].map(len) > 0]
    codes, _ = pd.factorize(posts["topics"].map(lambda t: t[0]))
    texts = posts["caption"].tolist()
    found = keywords(texts, codes)
    tags = [w for words in found.values() for w in words if w.startswith("#")]
    assert len(tags) >= 20 and "#dogsofinstagram" in tags and "#35mmfilm" in tags
    for g, words in found.items():
        mine = [t for t, c in zip(texts, codes, strict=True) if c == g]
        hashtags = {h.casefold() for t in mine for h in re.findall(r"#\w+", t)}
        assert {w for w in words if w.startswith("#")} <= hashtags, "a hashtag keyword is one of the posts' tags"
        assert all(in_posts(w, mine) >= MIN_POSTS for w in words), words  # a word counts only outside a hashtag
