"""What a topic or a cluster is about, in words: its top keywords by class-based TF-IDF (c-TF-IDF).

The posts of each group (a topic, a cluster) are read as one document. A word's weight in a
group is its share of the group's words times log(1 + A / f), where A is the mean number of
words per group and f the word's count over all groups (BERTopic's c-TF-IDF): a word frequent
in one group and rare elsewhere comes first.

A keyword is earned: it must be in at least `MIN_POSTS` of the group's posts. A word one post
says (however often) is that post's, not the group's; in a small group every such word ties at
the top, and a list filled out with them reads as alphabetical noise. So a group of few posts
gets few keywords, or none, rather than a padded list.

Tokens: words of two or more characters starting with a letter, and hashtags kept whole with
their `#` when they hold a letter (`#throwbackthursday` is one keyword, distinct from
`throwbackthursday`); links and @mentions are dropped (an account name says who, not what),
and so are numbers.

Stop words, for the languages present among the posts (py3langid on a sample; a language
counts when it is `LANGUAGE_SHARE` of the sample and at least two posts):
- English: scikit-learn's list (318 function words; the `stop-words` package's English list
  holds 1,300 words, content words such as "act" or "added" among them);
- the 32 other languages of the `stop-words` package (Spanish, French, German, Portuguese,
  Italian, Dutch, Polish, Turkish, Russian, Indonesian, Vietnamese, Arabic, ...): its list for
  the language; a list is taken off only when its language is present, since "son", "come"
  or "die" are words in another language;
- every language, listed or not: a word in more than half of the groups (with at least
  `COMMON_MIN_GROUPS` groups) is dropped, since function words of any language are in nearly
  every group and such a word names no group anyway.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
from scipy.sparse import csr_matrix, diags
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS, CountVectorizer

from topicli.method.languages import SAMPLE as LANGUAGE_SAMPLE
from topicli.method.languages import language_shares

KEYWORDS = 8
MIN_POSTS = 2  # posts of its group a word must be in to be one of the group's keywords
TOKEN_PATTERN = r"(?u)#\w*[^\W\d_]\w*|\b[^\W\d_]\w+\b"
DROPPED = re.compile(r"https?://\S+|www\.\S+|@[\w.]+")
LANGUAGE_SHARE = 0.02
LANGUAGE_MIN_POSTS = 2
COMMON_MIN_GROUPS = 4
COMMON_SHARE = 0.5


def stop_words(texts: Sequence[str]) -> frozenset[str]:
    """The stop words of the languages present among `texts`: scikit-learn's English list, the `stop-words`
    package's list for every other language it has."""
    shares = language_shares(texts)  # the run's own reading of languages (a seeded sample)
    sample = min(len([t for t in texts if t.strip()]), LANGUAGE_SAMPLE)
    present = {
        name for name, share in shares.items() if share >= LANGUAGE_SHARE and share * sample >= LANGUAGE_MIN_POSTS
    }
    words: set[str] = set(ENGLISH_STOP_WORDS) if "en" in present else set()
    try:
        import stop_words as stop_lists
    except ImportError:  # the Azure ML Spark job's Python 3.10 has no wheel of it: English and the groups' rule
        return frozenset(words)
    for name in sorted(present & set(stop_lists.LANGUAGE_MAPPING) - {"en"}):
        words.update(w.casefold() for w in stop_lists.get_stop_words(name))
    return frozenset(words)


def _clean(text: str) -> str:
    return DROPPED.sub(" ", text)


def keywords(
    texts: Sequence[str], groups: np.ndarray, n: int = KEYWORDS, stop: frozenset[str] | None = None
) -> dict[int, list[str]]:
    """The top `n` c-TF-IDF keywords of each group (`groups[i]` is text i's group; negative: in none), each in at
    least MIN_POSTS of the group's posts, so that a group may get fewer than `n`.

    `stop`: stop words to drop (default: `stop_words(texts)`). A group whose posts have no
    token left gets an empty list.
    """
    groups = np.asarray(groups)
    ids = sorted(int(g) for g in set(groups.tolist()) if g >= 0)
    if not ids:
        return {}
    members = np.flatnonzero(groups >= 0)
    vectorizer = CountVectorizer(token_pattern=TOKEN_PATTERN, lowercase=True)
    try:
        per_post = vectorizer.fit_transform([_clean(texts[i]) for i in members]).tocsr()  # posts x vocabulary
    except ValueError:  # no token at all (every post empty, emoji or punctuation)
        return {g: [] for g in ids}
    words = vectorizer.get_feature_names_out()
    stop = stop_words(texts) if stop is None else stop
    kept = ~np.isin(words, list(stop)) if stop else np.ones(len(words), dtype=bool)
    row = np.searchsorted(ids, groups[members])
    by_group = csr_matrix((np.ones(len(members)), (row, np.arange(len(members)))), shape=(len(ids), len(members)))
    counts = (by_group @ per_post).tocsr()  # sparse, groups x vocabulary: how often each group says each word
    if len(ids) >= COMMON_MIN_GROUPS:
        kept &= np.asarray((counts > 0).mean(axis=0)).ravel() <= COMMON_SHARE
    counts = (counts @ diags(kept.astype(np.float64))).tocsr()
    counts.eliminate_zeros()
    totals = np.asarray(counts.sum(axis=1)).ravel()
    frequency = np.asarray(counts.sum(axis=0)).ravel()
    idf = np.log1p(counts.sum() / len(ids) / np.where(frequency > 0, frequency, 1.0))
    in_posts = by_group @ (per_post > 0).astype(np.float64)  # in how many of the group's posts each word is
    earned = counts.multiply(in_posts >= MIN_POSTS).tocsr()  # the counts of the words that earned their place
    out = {}
    for i, g in enumerate(ids):
        start, end = earned.indptr[i], earned.indptr[i + 1]
        columns = earned.indices[start:end]
        weight = earned.data[start:end] / max(totals[i], 1.0) * idf[columns]
        order = np.lexsort((words[columns], -weight))  # ties alphabetically, so that reruns agree
        out[g] = [str(words[columns[j]]) for j in order[:n]]
    return out


def suggested_name(words: Sequence[str], n: int = 3) -> str:
    """A name for a group no topic fits, from its first keywords: `coffee · latte · #espresso`."""
    return " · ".join(words[:n])
