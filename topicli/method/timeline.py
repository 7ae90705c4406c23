"""Topics over time: posts per topic and period, and which topics grow or shrink.

The date column is `[input] date_column`, or else the first column named (any case) `date`,
`timestamp`, `created_at`, `taken_at` or `published`. Dates are parsed by pandas (ISO text,
or Unix seconds for a numeric column) and taken in UTC; a post without a readable date is
left out of the counts. The period follows the span of the dates, so that a chart has a few
to a few dozen points: days up to `DAY_SPAN`, weeks up to `WEEK_SPAN`, months beyond.

A topic's trend is the slope of its share of each period's posts (least squares over the
periods, in percentage points per period): a share, so that a month with more posts overall
does not make every topic "grow". Topics with fewer than `TREND_MIN_POSTS` dated posts are
not ranked.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from topicli.errors import TopicliError

DATE_NAMES = ("date", "timestamp", "created_at", "taken_at", "published")
DAY_SPAN = pd.Timedelta(days=60)
WEEK_SPAN = pd.Timedelta(days=366)
TREND_MIN_POSTS = 5
PERIODS = {"day": "D", "week": "7D", "month": "MS"}  # period starts: days, Mondays, firsts of the month
COLUMNS = ("period", "topic", "posts", "share")


def date_column(frame: pd.DataFrame, named: str = "") -> str | None:
    """The posts' date column: `named` (which must exist), else the first known name, else None."""
    if named:
        if named not in frame.columns:
            raise TopicliError(
                f"no date column {named!r}; columns are {', '.join(map(str, frame.columns))} (set [input] date_column)"
            )
        return named
    by_name = {str(c).casefold(): str(c) for c in frame.columns}
    return next((by_name[name] for name in DATE_NAMES if name in by_name), None)


def parse_dates(values: pd.Series) -> pd.Series:
    """UTC timestamps (NaT where unreadable): numbers as Unix seconds, text as ISO dates."""
    if pd.api.types.is_numeric_dtype(values):
        return pd.to_datetime(values, unit="s", utc=True, errors="coerce")
    with warnings.catch_warnings():  # "could not infer format": mixed formats are read one by one
        warnings.simplefilter("ignore", UserWarning)
        return pd.to_datetime(values.astype("string"), utc=True, errors="coerce", format="mixed")


def period_of(span: pd.Timedelta) -> str:
    """day, week or month, by the span of the dates."""
    return "day" if span <= DAY_SPAN else "week" if span <= WEEK_SPAN else "month"


def _period_starts(stamps: pd.Series, period: str) -> pd.Series:
    if period == "day":
        return stamps.dt.floor("D")
    if period == "week":
        return (stamps - pd.to_timedelta(stamps.dt.day_of_week, unit="D")).dt.floor("D")
    return stamps.dt.to_period("M").dt.start_time


def over_time(frame: pd.DataFrame, topics: pd.Series, named: str = "") -> pd.DataFrame | None:
    """Posts per (period, topic) with the topic's share of the period's dated posts, in period order; None when
    the posts have no date column or no readable date. Posts without a topic count in the shares only."""
    column = date_column(frame, named)
    if column is None:
        return None
    dates = parse_dates(frame[column])
    dated = dates.notna().to_numpy()
    if not dated.any():
        warnings.warn(f"column {column!r} holds no readable date: no topics over time", UserWarning, stacklevel=2)
        return None
    stamps = dates[dated].dt.tz_localize(None)
    period = period_of(stamps.max() - stamps.min())
    starts = _period_starts(stamps, period)
    periods = pd.date_range(starts.min(), starts.max(), freq=PERIODS[period])
    named_topics = topics.to_numpy()[dated]
    table = pd.DataFrame({"period": starts.to_numpy(), "topic": named_topics})
    totals = table.groupby("period").size().reindex(periods, fill_value=0)
    counts = table[table["topic"] != ""].groupby(["period", "topic"]).size().unstack(fill_value=0)
    counts = counts.reindex(periods, fill_value=0)
    long = counts.stack().rename("posts").reset_index()
    long.columns = ["period", "topic", "posts"]
    long["share"] = (long["posts"] / long["period"].map(totals).where(lambda t: t > 0, 1)).round(4)
    long["period"] = long["period"].dt.strftime("%Y-%m-%d")
    out = long.sort_values(["period", "topic"], kind="stable").reset_index(drop=True)[list(COLUMNS)]
    out.attrs = {"period": period, "date_column": column, "undated": int((~dated).sum())}
    return out


def read_over_time(path: Path) -> pd.DataFrame:
    """An over-time CSV as `over_time` wrote it, with its period (day, week or month) told by its dates."""
    counts = pd.read_csv(path, dtype={"topic": str}, keep_default_na=False)
    missing = [c for c in COLUMNS if c not in counts.columns]
    if missing:
        raise TopicliError(f"{path} is not a topics-over-time table (no column {', '.join(missing)}); rerun the run")
    starts = pd.to_datetime(pd.Series(sorted(set(counts["period"]))))
    gap = starts.diff().dropna().min() if len(starts) > 1 else pd.Timedelta(days=1)
    counts.attrs = {
        "period": "day" if gap <= pd.Timedelta(days=1) else "week" if gap <= pd.Timedelta(days=7) else "month"
    }
    return counts


def trends(counts: pd.DataFrame) -> pd.DataFrame:
    """Per topic with at least TREND_MIN_POSTS dated posts: its posts, its mean share (%) over the first and the
    last quarter of the periods, and the slope of its share (percentage points per period); fastest growing first."""
    shares = counts.pivot(index="period", columns="topic", values="share").sort_index()
    posts = counts.groupby("topic")["posts"].sum()
    rows = []
    x = np.arange(len(shares), dtype=np.float64)
    for topic in shares.columns:
        if posts[topic] < TREND_MIN_POSTS or len(shares) < 2:
            continue
        y = shares[topic].to_numpy(dtype=np.float64) * 100
        slope = float(np.polyfit(x, y, 1)[0])
        q = max(1, len(y) // 4)  # a quarter of the periods: one period alone is a handful of posts
        first, last = float(y[:q].mean()), float(y[-q:].mean())
        rows.append({"topic": topic, "posts": int(posts[topic]), "first": first, "last": last, "slope": slope})
    table = pd.DataFrame(rows, columns=["topic", "posts", "first", "last", "slope"])
    return table.sort_values(["slope", "topic"], ascending=[False, True], kind="stable").reset_index(drop=True)
