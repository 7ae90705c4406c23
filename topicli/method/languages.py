"""The posts' languages, and `auto`'s choice of encoder from them.

Each post's language is read by py3langid (ISO 639-1 codes). An encoder's quality on a
language is topicli's macro-F1 with it, one language at a time, on development data
(`MEASURED`: SIB-200 dev + the first 101 train sentences, `bench/quality.py --dev`); on a
language not measured it is the encoder's mean over the measured languages it was (or was
not) trained on (`TRAINED_ON`). A language *loses* with an encoder by the gap to the best
encoder's quality on it.

`auto` takes the encoder whose worst language, over the languages of at least `MIN_SHARE` of
the posts, loses least, the faster (`BY_SPEED`) on a tie (`QUALITY_MARGIN` = 0): no language
of the feed, however small a minority, is read worse than it need be, and English-only feeds
keep the fast all-MiniLM-L6-v2. Serving the most posts instead kept all-MiniLM-L6-v2 on the
examples' 93 %-English set, where the other 7 % then got 10-25 % of their topics right; the
per-post cosine as the measure, and a margin of 0.05 for speed, took USE on Italian, Dutch,
Polish and Turkish, where e5-small gives topicli 0.06-0.12 more macro-F1
(bench/results/quality.md). Posts in a language no encoder was trained on are counted
(`EncoderChoice.uncovered_share`): their topics are guesses.
"""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from topicli.method.tokens import centre, read_languages

if TYPE_CHECKING:
    from topicli.serving.bundle.format import Bundle

DEFAULT_ENCODER = "all-MiniLM-L6-v2"
MULTILINGUAL = "multilingual"
E5_SMALL = "multilingual-e5-small"
MULTILINGUAL_ENCODERS = (MULTILINGUAL, E5_SMALL)  # whose posts lose their language's mean vector in a mix
SAMPLE = 2000  # posts whose language is read; a seeded sample of larger inputs
MIN_SHARE = 0.01  # languages of fewer posts do not decide: py3langid misreads a few short posts
MIN_POSTS = 5  # posts a language needs for a mean vector of its own
WARN_UNSERVED = 0.02  # warn when this share of posts is read poorly by the chosen encoder
QUALITY_MARGIN = 0.0  # macro-F1 a language may lose to the best encoder for it (see the module docstring)
WARN_LOSS = 0.05  # a named encoder reading a language this much worse than the best one is a warning
UNCOVERED_WARNING = 0.01  # warn when this share of posts is in languages no encoder was trained on

# What each encoder was trained on. all-MiniLM-L6-v2: English. USE v3 multilingual: its 16
# languages (model card). multilingual-e5-small: XLM-RoBERTa's ~100 languages (model card).
_USE_LANGUAGES = "ar de en es fr it ja ko nl pl pt ru th tr zh"
_E5_LANGUAGES = (
    "af am ar as az be bg bn br bs ca cs cy da de el en eo es et eu fa fi fr fy ga gd gl gu ha he hi hr hu hy "
    "id is it ja jv ka kk km kn ko ku ky la lo lt lv mg mk ml mn mr ms my ne nl no om or pa pl ps pt ro ru sa "
    "sd si sk sl so sq sr su sv sw ta te th tl tr ug uk ur uz vi xh yi zh"
)
TRAINED_ON: dict[str, frozenset[str]] = {
    DEFAULT_ENCODER: frozenset({"en"}),
    MULTILINGUAL: frozenset(_USE_LANGUAGES.split()),
    E5_SMALL: frozenset(_E5_LANGUAGES.split()),
}
# The order `auto` tries them in: e5-small last, several times slower than the other two (posts/s measured in
# bench/results/quality.md); all-MiniLM-L6-v2 before USE, which is as fast or faster on mixed scripts, but the two
# never both come within the margin on a measured language, so their order decides nothing there.
BY_SPEED = (DEFAULT_ENCODER, MULTILINGUAL, E5_SMALL)

# topicli's macro-F1 (default settings, one language at a time) on SIB-200 dev + the first 101 train sentences
# of each language (bench/quality.py --dev, bench/results/quality_dev.md).
MEASURED: dict[str, dict[str, float]] = {
    "bn": {DEFAULT_ENCODER: 0.072, MULTILINGUAL: 0.094, E5_SMALL: 0.591},
    "de": {DEFAULT_ENCODER: 0.425, MULTILINGUAL: 0.641, E5_SMALL: 0.682},
    "el": {DEFAULT_ENCODER: 0.111, MULTILINGUAL: 0.098, E5_SMALL: 0.621},
    "en": {DEFAULT_ENCODER: 0.719, MULTILINGUAL: 0.61, E5_SMALL: 0.657},
    "es": {DEFAULT_ENCODER: 0.483, MULTILINGUAL: 0.688, E5_SMALL: 0.665},
    "fr": {DEFAULT_ENCODER: 0.527, MULTILINGUAL: 0.652, E5_SMALL: 0.703},
    "he": {DEFAULT_ENCODER: 0.128, MULTILINGUAL: 0.116, E5_SMALL: 0.691},
    "id": {DEFAULT_ENCODER: 0.309, MULTILINGUAL: 0.589, E5_SMALL: 0.679},
    "it": {DEFAULT_ENCODER: 0.479, MULTILINGUAL: 0.686, E5_SMALL: 0.693},
    "mr": {DEFAULT_ENCODER: 0.088, MULTILINGUAL: 0.097, E5_SMALL: 0.632},
    "nl": {DEFAULT_ENCODER: 0.395, MULTILINGUAL: 0.601, E5_SMALL: 0.627},
    "pl": {DEFAULT_ENCODER: 0.342, MULTILINGUAL: 0.619, E5_SMALL: 0.632},
    "pt": {DEFAULT_ENCODER: 0.395, MULTILINGUAL: 0.641, E5_SMALL: 0.501},
    "sw": {DEFAULT_ENCODER: 0.285, MULTILINGUAL: 0.214, E5_SMALL: 0.56},
    "th": {DEFAULT_ENCODER: 0.178, MULTILINGUAL: 0.696, E5_SMALL: 0.717},
    "tr": {DEFAULT_ENCODER: 0.239, MULTILINGUAL: 0.613, E5_SMALL: 0.617},
    "uk": {DEFAULT_ENCODER: 0.106, MULTILINGUAL: 0.398, E5_SMALL: 0.605},
    "vi": {DEFAULT_ENCODER: 0.29, MULTILINGUAL: 0.259, E5_SMALL: 0.672},
}


@dataclass(frozen=True)
class EncoderChoice:
    """The encoder `auto` took, why, and the languages it read (share of posts per language)."""

    name: str
    reason: str
    languages: dict[str, float] = field(default_factory=dict)
    uncovered_share: float = 0.0  # posts in a language no encoder was trained on
    unserved_share: float = 0.0  # posts in languages it reads more than WARN_LOSS worse than the best encoder
    named: bool = False  # named in the settings, not chosen by auto

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "reason": self.reason,
            "languages": self.languages,
            "uncovered_share": self.uncovered_share,
            "unserved_share": self.unserved_share,
        }


def detect_languages(texts: Sequence[str], sample: int = SAMPLE) -> list[str]:
    """py3langid's language of each non-empty text of (a seeded sample of) `texts`."""
    texts = [t for t in texts if t.strip()]
    if len(texts) > sample:
        texts = [texts[i] for i in sorted(np.random.default_rng(0).choice(len(texts), sample, replace=False))]
    return read_languages(texts)


def language_shares(texts: Sequence[str]) -> dict[str, float]:
    """Share of (a seeded sample of) the non-empty texts in each language, largest first."""
    found = detect_languages(texts)
    return {lang: round(n / len(found), 4) for lang, n in Counter(found).most_common()} if found else {}


def english_share(texts: Sequence[str]) -> float:
    """Share of (a seeded sample of) the texts that py3langid reads as English."""
    return language_shares(texts).get("en", 1.0 if not [t for t in texts if t.strip()] else 0.0)


def quality(encoder: str, language: str) -> float:
    """Measured per-post cosine macro-F1 of the encoder on the language, else its mean where it was (not) trained."""
    measured = MEASURED.get(language, {})
    if encoder in measured:
        return measured[encoder]
    trained = language in TRAINED_ON[encoder]
    alike = [m[encoder] for lang, m in MEASURED.items() if (lang in TRAINED_ON[encoder]) == trained]
    return float(np.mean(alike)) if alike else 0.0


def loss(encoder: str, language: str) -> float:
    """How much worse than the best encoder this one reads the language."""
    return max(quality(e, language) for e in BY_SPEED) - quality(encoder, language)


def uncovered_share(shares: dict[str, float]) -> float:
    """Share of posts in a language that no encoder was trained on."""
    covered = set().union(*TRAINED_ON.values())
    return round(sum(s for lang, s in shares.items() if lang not in covered), 4)


def _languages_read(shares: dict[str, float]) -> str:
    return ", ".join(f"{lang} {share:.0%}" for lang, share in list(shares.items())[:4])


def _unserved(encoder: str, shares: dict[str, float]) -> float:
    """Share of posts in languages the encoder reads more than `WARN_LOSS` worse than the best one."""
    return round(sum(s for lang, s in shares.items() if loss(encoder, lang) > WARN_LOSS), 4)


def choose_from_shares(shares: dict[str, float]) -> EncoderChoice:
    """The fastest encoder whose worst language (of `MIN_SHARE`+ of the posts) loses at most `QUALITY_MARGIN` to
    the best encoder for it, else the encoder whose worst language loses least (`EncoderChoice`)."""
    if not shares:
        return EncoderChoice(DEFAULT_ENCODER, f"auto chose {DEFAULT_ENCODER}: no post has text")
    languages = [lang for lang, share in shares.items() if share >= MIN_SHARE] or list(shares)
    worst = {e: max(loss(e, lang) for lang in languages) for e in BY_SPEED}
    within = [e for e in BY_SPEED if worst[e] <= QUALITY_MARGIN]
    name = within[0] if within else min(BY_SPEED, key=lambda e: (worst[e], BY_SPEED.index(e)))
    figures = ", ".join(f"{e} {worst[e]:.2f}" for e in BY_SPEED)
    reason = (
        f"auto chose {name}: the encoder whose worst language loses least to the best encoder for it (dev "
        f"macro-F1 lost by the worst language of {MIN_SHARE:.0%}+ of the posts: {figures}; languages read: "
        f"{_languages_read(shares)})"
    )
    return EncoderChoice(name, reason, shares, uncovered_share(shares), _unserved(name, shares))


def named_encoder(name: str, shares: dict[str, float]) -> EncoderChoice:
    """A named encoder, with the share of posts in languages it reads poorly (unknown for a folder)."""
    unserved = _unserved(name, shares) if name in TRAINED_ON else 0.0
    return EncoderChoice(name, f"{name}: named in [encoder] name", shares, uncovered_share(shares), unserved, True)


def choose_encoder(texts: Sequence[str], name: str = "auto") -> EncoderChoice:
    """The encoder for these posts: `auto`'s choice from their languages, or the named one."""
    shares = language_shares(texts)
    return choose_from_shares(shares) if name == "auto" else named_encoder(name, shares)


class LanguageWarning(UserWarning):
    """Posts are in languages that the encoder (or every encoder) was not trained on."""


def warn_languages(choice: EncoderChoice) -> None:
    """Warn about posts whose language no encoder knows, and about those a named encoder reads poorly (auto's
    reason says what its choice costs)."""
    if choice.uncovered_share >= UNCOVERED_WARNING:
        warnings.warn(
            f"{choice.uncovered_share:.1%} of the posts are in languages that no encoder was trained on "
            f"(languages read: {_languages_read(choice.languages)}); their topics are guesses",
            LanguageWarning,
            stacklevel=2,
        )
    if choice.named and choice.unserved_share - choice.uncovered_share >= WARN_UNSERVED:
        warnings.warn(
            f"{choice.unserved_share:.1%} of the posts are in languages that {choice.name} reads more than "
            f"{WARN_LOSS:.2f} macro-F1 worse than the best encoder; "
            '[encoder] name = "auto" chooses by the posts\' languages',
            LanguageWarning,
            stacklevel=2,
        )


@dataclass(frozen=True)
class LanguageMeans:
    """Each language's mean vector among a run's posts (languages of `MIN_SHARE`+ of the posts and at least
    `MIN_POSTS`), then the posts' overall mean, which posts in other languages and the topic names lose.

    Removing them before clustering and scoring takes away what an encoder puts into every
    sentence of a language alike, so clusters gather topics rather than languages: on an
    8-language SIB-200 dev mix with multilingual-e5-small, language purity fell from 0.65 to
    0.28 and macro-F1 rose from 0.61 to 0.71 (bench/results/quality_dev.md).
    """

    languages: list[str]
    means: np.ndarray  # (len(languages) + 1, dimension) float32

    @classmethod
    def from_bundle(cls, bundle: Bundle) -> LanguageMeans | None:
        """The means a mixed-language run removed, from its bundle; None when it removed none."""
        centred = bundle.manifest.encoder.centred_languages
        return cls(list(centred), bundle.arrays["language_means"]) if centred else None

    def centre(self, vectors: np.ndarray, languages: Sequence[str]) -> np.ndarray:
        return centre(vectors, languages, self.languages, self.means)

    def centre_texts(self, vectors: np.ndarray, texts: Sequence[str]) -> np.ndarray:
        return self.centre(vectors, read_languages(texts))

    def centre_overall(self, vectors: np.ndarray) -> np.ndarray:
        """Topic names: less the posts' overall mean."""
        return self.centre(vectors, [""] * len(vectors))


def language_means(vectors: np.ndarray, languages: Sequence[str], weights: np.ndarray) -> LanguageMeans | None:
    """The posts' language means, or None when fewer than two languages hold `MIN_SHARE` of the posts and
    `MIN_POSTS` posts each (a one-language run is left as it is)."""
    codes = np.asarray(languages, dtype=object)
    total = float(weights.sum())
    kept = [
        lang
        for lang in sorted(set(languages))
        if float(weights[codes == lang].sum()) >= max(MIN_POSTS, MIN_SHARE * total)
    ]
    if len(kept) < 2:
        return None
    rows = [np.average(vectors[codes == lang], axis=0, weights=weights[codes == lang]) for lang in kept]
    rows.append(np.average(vectors, axis=0, weights=weights))
    return LanguageMeans(kept, np.asarray(rows, dtype=np.float32))
