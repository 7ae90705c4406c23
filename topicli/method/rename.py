"""Renaming and merging the topics of a run, without clustering or scoring again.

A mapping file has two columns, old name and new name (CSV; a first row `from,to` or
`old,new` is a header). Every old name must be a topic of the run or the suggested name of
one of its unmatched clusters:

- a topic renamed to a new name is renamed; two topics renamed to one name are merged;
- an unmatched cluster renamed to a topic's (new) name joins that topic: its posts get what
  the bundle answers for a post of a matched cluster (the topic with the cluster's confidence,
  or the post's own topic where it beats the cluster's by the override margin; calibrated).
  It cannot take a name that is no topic of the run: serving scores posts against the topic
  list, which has no vectors for it (add the topic to the list and run `topicli label`).

The posts output, the topic table (sizes, clusters, confidence, keywords and examples of the
merged topics, from the posts) and the topics over time are written again; the bundle's
manifest gets the new names (`topicli.serving.bundle.renamed_bundle`). The topic list keeps its length and order,
so a served post is scored exactly as before and answered with the new name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from topicli.errors import TopicliError
from topicli.io import encodable
from topicli.method.keywords import KEYWORDS, keywords, stop_words
from topicli.method.records import RUNNER_UP_COLUMN
from topicli.method.timeline import over_time

HEADERS = ({"from", "to"}, {"old", "new"})


@dataclass
class RenamedRun:
    """The outputs of a run after renaming: what `topicli.runs.outputs.write_outputs` writes."""

    posts: pd.DataFrame
    topic_table: pd.DataFrame
    over_time: pd.DataFrame | None
    mapping: dict[str, str]  # topic names only, old → new, unmatched clusters taken out
    joined: dict[int, str]  # unmatched cluster → the topic (new name) it joined


def read_mapping(path: Path) -> dict[str, str]:
    """Old name → new name from a two-column CSV file."""
    try:
        frame = pd.read_csv(path, header=None, dtype=str, keep_default_na=False, skipinitialspace=True)
    except FileNotFoundError:
        raise TopicliError(f"{path}: no such file; give a CSV of two columns, old name and new name") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise TopicliError(f"{path} is not a two-column CSV ({error}); write one `old,new` pair a line") from None
    if frame.shape[1] != 2:
        raise TopicliError(f"{path} has {frame.shape[1]} columns; give two: old name, new name")
    if {str(v).strip().casefold() for v in frame.iloc[0]} in HEADERS:
        frame = frame.iloc[1:]
    mapping: dict[str, str] = {}
    for line, (old, new) in enumerate(frame.itertuples(index=False, name=None), start=1):
        old, new = str(old).strip(), str(new).strip()
        if not old or not new:
            raise TopicliError(f"{path}: pair {line} has an empty name; give `old,new` on every line")
        if mapping.get(old, new) != new:
            raise TopicliError(f"{path}: {old!r} is renamed twice ({mapping[old]!r} and {new!r}); keep one")
        mapping[old] = new
    if not mapping:
        raise TopicliError(f"{path} holds no pair; write one `old,new` pair a line")
    return mapping


def _split(mapping: dict[str, str], table: pd.DataFrame) -> tuple[dict[str, str], dict[int, str]]:
    """(topic renames, unmatched cluster → topic it joins), or an error naming what the run has not."""
    kinds = table["kind"] if "kind" in table.columns else pd.Series("topic", index=table.index)
    topics = table.loc[kinds == "topic", "topic"].astype(str).tolist()
    rows = table[kinds == "unmatched"]
    unmatched = dict(zip(rows["topic"].astype(str), rows["clusters"], strict=True))
    unknown = [old for old in mapping if old not in topics and old not in unmatched]
    if unknown:
        raise TopicliError(
            f"no topic or unmatched cluster named {', '.join(map(repr, unknown))} in this run; "
            f"its topics are {', '.join(topics)}"
        )
    renames = {old: new for old, new in mapping.items() if old in topics}
    new_names = {renames.get(t, t) for t in topics}
    joined: dict[int, str] = {}
    for old, new in mapping.items():
        if old in unmatched:
            if new not in new_names:
                raise TopicliError(
                    f"unmatched cluster {old!r} can only join a topic of the run, not {new!r}; add {new!r} to the "
                    "topic list and run `topicli label` to make it a topic"
                )
            joined[int(unmatched[old])] = new
    return renames, joined


JoinedAnswer = Callable[[list[str], int, int], tuple[np.ndarray, np.ndarray]]


def rename_outputs(
    posts: pd.DataFrame,
    table: pd.DataFrame,
    text_column: str,
    mapping: dict[str, str],
    topic_list: list[str],
    answer_joined: JoinedAnswer,
    date_column: str = "",
    n_keywords: int = KEYWORDS,
) -> RenamedRun:
    """The posts output and topic table of a run with the mapping applied, and the topics over time again.

    `answer_joined(texts, cluster, topic)` gives the posts of an unmatched cluster joining the topic at
    index `topic` of `topic_list` (the bundle's, old names) their topic indices and confidence:
    `BundleModel.answer_as_cluster`.
    """
    table = table.assign(  # as read back from any output format: CSV gives text
        clusters=table["clusters"].fillna("").astype(str),
        size=pd.to_numeric(table["size"]).astype(int),
        from_noise=pd.to_numeric(table["from_noise"]).astype(int),
        confidence=pd.to_numeric(table["confidence"], errors="coerce"),
    )
    renames, joined = _split(mapping, table)
    out = posts.assign(cluster=pd.to_numeric(posts["cluster"]).astype(int))
    topic = out["topic"].fillna("").astype(str).map(lambda t: renames.get(t, t))
    confidence = pd.to_numeric(out["topic_confidence"], errors="coerce")
    new_list = [renames.get(t, t) for t in topic_list]
    for cluster, name in joined.items():
        rows = (out["cluster"] == cluster) & (topic == "")
        found, sure = answer_joined(
            [encodable(str(t)) for t in out.loc[rows, text_column]], cluster, new_list.index(name)
        )
        topic[rows] = [new_list[t] if t >= 0 else "" for t in found]
        confidence[rows] = np.round(sure, 4)
        if RUNNER_UP_COLUMN in out.columns:
            out.loc[rows, RUNNER_UP_COLUMN] = ""
    out["topic"], out["topic_confidence"] = topic, confidence
    if RUNNER_UP_COLUMN in out.columns:
        out[RUNNER_UP_COLUMN] = out[RUNNER_UP_COLUMN].fillna("").astype(str).map(lambda t: renames.get(t, t))
    new_table = _table(out, table, text_column, renames, joined, n_keywords)
    dated = over_time(posts, out["topic"], date_column)
    return RenamedRun(out, new_table, dated, renames, joined)


def _table(
    posts: pd.DataFrame,
    table: pd.DataFrame,
    text_column: str,
    renames: dict[str, str],
    joined: dict[int, str],
    n_keywords: int,
) -> pd.DataFrame:
    """The topic table again: one row per (new) topic, with the merged rows' clusters and noise posts, the
    posts' sizes and confidence, fresh keywords and examples; the unmatched clusters that joined none after."""
    table = table.copy()
    kinds = table["kind"] if "kind" in table.columns else pd.Series("topic", index=table.index)
    is_topic = kinds == "topic"
    table["new"] = table["topic"].astype(str).map(lambda t: renames.get(t, t))
    texts = [encodable(str(t)) if pd.notna(t) else "" for t in posts[text_column]]  # a lone surrogate as U+FFFD
    names = posts["topic"].to_numpy()
    order = sorted(set(names) - {""})
    codes = np.array([order.index(n) if n else -1 for n in names])
    words = keywords(texts, codes, n_keywords, stop_words(texts))
    confidence = pd.to_numeric(posts["topic_confidence"], errors="coerce").to_numpy()
    rows = []
    for code, name in enumerate(order):
        old = table[is_topic & (table["new"] == name)].sort_values("size", ascending=False, kind="stable")
        clusters = [str(c) for c in old["clusters"].fillna("").astype(str) if c]
        clusters += [str(c) for c, topic in joined.items() if topic == name]
        mine = np.flatnonzero(codes == code)
        ranked = mine[np.lexsort((mine, -np.nan_to_num(confidence[mine], nan=-1.0)))]
        examples = list(dict.fromkeys(texts[i] for i in ranked))[:3]
        # the runner-up of the largest merged topic that is not now the topic itself
        seconds = (renames.get(str(r), str(r)) for r in old["runner_up"].fillna("") if r)
        runner_up = next((r for r in seconds if r != name), "")
        rows.append(
            {
                "topic": name,
                "kind": "topic",
                "clusters": " ".join(" ".join(clusters).split()),
                "size": len(mine),
                "from_noise": int(pd.to_numeric(old["from_noise"]).sum()),
                "confidence": round(float(np.nanmean(confidence[mine])), 4),
                "runner_up": runner_up,
                "keywords": ", ".join(words.get(code, [])),
                **{f"example_{i + 1}": (examples[i] if i < len(examples) else "") for i in range(3)},
            }
        )
    topics = pd.DataFrame(rows, columns=[c for c in table.columns if c != "new"])
    topics = topics.sort_values(["size", "topic"], ascending=[False, True], kind="stable")
    left = table[kinds == "unmatched"].drop(columns="new")
    left = left[~left["clusters"].astype(int).isin(list(joined))]
    left = left.assign(runner_up=left["runner_up"].astype(str).map(lambda t: renames.get(t, t)))
    return pd.concat([topics, left], ignore_index=True)
