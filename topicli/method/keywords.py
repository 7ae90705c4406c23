"""What a topic or a cluster is about, in words: its top keywords by class-based TF-IDF (c-TF-IDF).

The posts of each group (a topic, a cluster) are read as one document. A word's weight in a
group is its share of the group's words times log(1 + A / f), where A is the mean number of
words per group and f the word's count over all groups (BERTopic's c-TF-IDF): a word frequent
in one group and rare elsewhere comes first. Words the group uses more than once come before
those it uses once: in a small group every one-off word ties at the top.

Tokens: words of two or more characters starting with a letter, and hashtags kept whole with
their `#` when they hold a letter (`#yogalife` is one keyword, distinct from `yogalife`); links and @mentions are
dropped (an account name says who, not what), and so are numbers.

Stop words, for the languages present among the posts (py3langid on a sample; a language
counts when it is `LANGUAGE_SHARE` of the sample and at least two posts):
- English: scikit-learn's list, the only one it ships;
- Spanish, French, German, Portuguese, Italian and Dutch (after English, the languages the
  example posts and the multilingual encoders' users write in most): their commonest function
  words, below (`FUNCTION_WORDS`), written for this module; a list is taken off only when its
  language is present, since "son", "come" or "die" are words in another language;
- every language, these or not: a word in more than half of the groups (with at least
  `COMMON_MIN_GROUPS` groups) is dropped, since function words of any language are in nearly
  every group and such a word names no group anyway. No list is guessed for other languages.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
from scipy.sparse import diags
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS, CountVectorizer

from topicli.method.languages import SAMPLE as LANGUAGE_SAMPLE
from topicli.method.languages import language_shares

KEYWORDS = 8
TOKEN_PATTERN = r"(?u)#\w*[^\W\d_]\w*|\b[^\W\d_]\w+\b"
DROPPED = re.compile(r"https?://\S+|www\.\S+|@[\w.]+")
LANGUAGE_SHARE = 0.02
LANGUAGE_MIN_POSTS = 2
COMMON_MIN_GROUPS = 4
COMMON_SHARE = 0.5


FUNCTION_WORDS = {
    "es": "a al algo algunos ante antes como con contra cual cuando de del desde donde durante e el ella ellas ellos "
    "en entre era es esa ese eso esta estaba estamos estan este esto estos fue ha hasta hay la las le les lo los mas "
    "me mi mis mucho muy más mí nada ni no nos nosotros o otra otro para pero poco por porque que quien se ser si sin "
    "sobre solo son su sus también tan te tengo tiene todo todos tu tus un una uno unos y ya yo él está están",
    "fr": "a ai au aux avec avoir c ce cela ces cet cette d dans de des du elle elles en est et eu fait il ils j je l "
    "la le les leur lui m ma mais me mes moi mon même n ne nos notre nous on ont ou par pas plus pour qu que qui s sa "
    "se ses si son sont sur ta te tes toi ton tous tout tu un une vos votre vous y à été être ça où",
    "de": "aber alle als also am an auch auf aus bei bin bis bist da damit dann das dass dem den der des die dies "
    "diese dir doch du durch ein eine einem einen einer es für hab habe haben hat hatte ich ihr im in ist ja jetzt "
    "kann kein mal man mehr mein meine meiner mich mir mit nach nicht noch nur ob oder schon sein sich sie sind so "
    "um und uns von vor war was weil wenn wer wie wir wird zu zum zur über",
    "pt": "a ao aos as com como da das de do dos e ela ele eles em entre era essa esse esta este eu foi for isso já "
    "lhe mais mas me meu minha muito na nas nem no nos nós não o os ou para pela pelo por quando que se sem ser seu "
    "sua são também te tem tu um uma você à é está",
    "it": "a ad al alla alle anche che chi ci come con da dal dalla dei del della di e ed era gli ha hai ho i il in io "
    "la le lei li lo loro lui ma mi mia mio ne nei nel nella noi non o per perché più quando quella quello questa "
    "questo se si sono su sua suo sul sulla ti tra tu tutto un una uno è",
    "nl": "aan al als bij dan dat de deze die dit doen door een en er had heb hebben heeft het hier hij hoe ik in is "
    "je kan maar me meer men met mij mijn na naar niet niets nog nu of om onder ons ook op over te tot u uit van "
    "veel voor want was wat we wel werd wie wij wordt zal ze zei zich zij zijn zo zonder",
}


def stop_words(texts: Sequence[str]) -> frozenset[str]:
    """The stop words of the languages present among `texts`: scikit-learn's English list and FUNCTION_WORDS."""
    shares = language_shares(texts)  # the run's own reading of languages (a seeded sample)
    sample = min(len([t for t in texts if t.strip()]), LANGUAGE_SAMPLE)
    present = {
        name for name, share in shares.items() if share >= LANGUAGE_SHARE and share * sample >= LANGUAGE_MIN_POSTS
    }
    words: set[str] = set(ENGLISH_STOP_WORDS) if "en" in present else set()
    for name in present & set(FUNCTION_WORDS):
        words.update(FUNCTION_WORDS[name].split())
    return frozenset(words)


def _clean(text: str) -> str:
    return DROPPED.sub(" ", text)


def keywords(
    texts: Sequence[str], groups: np.ndarray, n: int = KEYWORDS, stop: frozenset[str] | None = None
) -> dict[int, list[str]]:
    """The top `n` c-TF-IDF keywords of each group (`groups[i]` is text i's group; negative: in none).

    `stop`: stop words to drop (default: `stop_words(texts)`). A group whose posts have no
    token left gets an empty list.
    """
    groups = np.asarray(groups)
    ids = sorted(int(g) for g in set(groups.tolist()) if g >= 0)
    if not ids:
        return {}
    documents = [" ".join(_clean(texts[i]) for i in np.flatnonzero(groups == g)) for g in ids]
    stop = stop_words(texts) if stop is None else stop
    vectorizer = CountVectorizer(token_pattern=TOKEN_PATTERN, lowercase=True, stop_words=list(stop) or None)
    try:
        counts = vectorizer.fit_transform(documents).astype(np.float64).tocsr()  # sparse: groups x vocabulary
    except ValueError:  # no token at all (every post empty, emoji or stop words)
        return {g: [] for g in ids}
    words = vectorizer.get_feature_names_out()
    if len(ids) >= COMMON_MIN_GROUPS:
        common = np.asarray((counts > 0).mean(axis=0)).ravel() > COMMON_SHARE
        counts = (counts @ diags((~common).astype(np.float64))).tocsr()
        counts.eliminate_zeros()
    totals = np.asarray(counts.sum(axis=1)).ravel()
    frequency = np.asarray(counts.sum(axis=0)).ravel()
    idf = np.log1p(counts.sum() / len(ids) / np.where(frequency > 0, frequency, 1.0))
    out = {}
    for row, g in enumerate(ids):
        start, stop = counts.indptr[row], counts.indptr[row + 1]
        columns, said = counts.indices[start:stop], counts.data[start:stop]
        weight = said / max(totals[row], 1.0) * idf[columns]
        # words said more than once in the group first (one-off words tie at the top of small groups), ties
        # alphabetically so that reruns agree
        order = np.lexsort((words[columns], -weight, said < 2))
        out[g] = [str(words[columns[i]]) for i in order[:n] if weight[i] > 0]
    return out


def suggested_name(words: Sequence[str], n: int = 3) -> str:
    """A name for a group no topic fits, from its first keywords: `coffee · latte · #espresso`."""
    return " · ".join(words[:n])
