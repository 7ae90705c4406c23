"""Topics over time: posts per topic and period, and which topics grow or shrink.

The date column is `[input] date_column`, or else the first column named (any case) `date`,
`timestamp`, `created_at`, `taken_at` or `published`. Dates are parsed by pandas (ISO text,
or Unix seconds for a numeric column) and taken in UTC; a post without a readable date is
left out of the counts. The period follows the span of the dates, so that a chart has a few
to a few dozen points: days up to `DAY_SPAN`, weeks up to `WEEK_SPAN`, months beyond.

A topic grows or shrinks only when the change of its share beats chance (`trends`): its
share of the dated posts with a topic over the first half of the periods against the second
half (the middle period left out when their number is odd), by Fisher's exact test on that
2 x 2 table of counts, the p-values Holm-adjusted across the topics tested so that a run whose
topics do not change reports a trend at most `TREND_LEVEL` of the time, however many topics it
has. A share, so that a busy period does not make every topic "grow"; of the posts with a
topic, so that a change in how many posts get none does not either. The change comes with its
95% interval (Newcombe's hybrid score interval for a difference of two proportions). Topics
with fewer than `TREND_MIN_POSTS` dated posts are not tested (nor counted in the adjustment).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import fisher_exact, norm

from topicli.errors import TopicliError

DATE_NAMES = ("date", "timestamp", "created_at", "taken_at", "published")
DAY_SPAN = pd.Timedelta(days=60)
WEEK_SPAN = pd.Timedelta(days=366)
TREND_MIN_POSTS = 5
TREND_LEVEL = 0.01  # family-wise: the most a run whose topics do not change may report a trend (1 in 100)
TREND_TEST = "Fisher's exact test, first half against second half of the periods, Holm-adjusted across topics"
TREND_COLUMNS = ("topic", "posts", "first", "last", "change", "low", "high", "p", "p_adjusted", "trend")
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


def wilson(k: np.ndarray, n: np.ndarray, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Wilson's score interval of the proportions k / n (n > 0)."""
    z = norm.ppf(0.5 + level / 2)
    p = k / n
    centre = (p + z**2 / (2 * n)) / (1 + z**2 / n)
    half = z / (1 + z**2 / n) * np.sqrt(p * (1 - p) / n + z**2 / (4 * n**2))
    return centre - half, centre + half


def holm(p: np.ndarray) -> np.ndarray:
    """Holm's step-down adjustment of p-values: reject where the adjusted value is below the family-wise level."""
    order = np.argsort(p, kind="stable")
    m = len(p)
    stepped = np.maximum.accumulate(np.minimum((m - np.arange(m)) * p[order], 1.0))
    adjusted = np.empty_like(stepped)
    adjusted[order] = stepped
    return adjusted


def trends(counts: pd.DataFrame, level: float = TREND_LEVEL) -> pd.DataFrame:
    """Per topic with at least TREND_MIN_POSTS dated posts: its posts; its share (%) of the posts with a topic over
    the first (`first`) and the second half (`last`) of the periods; the change in percentage points with its 95%
    interval (`low`, `high`); Fisher's exact p-value and the Holm-adjusted one; `trend` "grows" or "shrinks" where
    the adjusted p-value is below `level`, else "". Largest rise first."""
    posts = counts.pivot(index="period", columns="topic", values="posts").sort_index().fillna(0)
    half = len(posts) // 2
    tested = [t for t in posts.columns if posts[t].sum() >= TREND_MIN_POSTS] if half else []
    if not tested:
        return pd.DataFrame(columns=list(TREND_COLUMNS))
    before, after = posts.iloc[:half], posts.iloc[len(posts) - half :]
    k1, k2 = before[tested].sum().to_numpy(), after[tested].sum().to_numpy()
    n1, n2 = float(before.to_numpy().sum()), float(after.to_numpy().sum())
    if not (n1 and n2):  # one half has no post with a topic: nothing to compare
        return pd.DataFrame(columns=list(TREND_COLUMNS))
    p = np.array([fisher_exact([[a, n1 - a], [b, n2 - b]]).pvalue for a, b in zip(k1, k2, strict=True)])
    adjusted = holm(p)
    first, last = k1 / n1, k2 / n2
    (low1, high1), (low2, high2) = wilson(k1, np.full(len(k1), n1)), wilson(k2, np.full(len(k2), n2))
    change = last - first
    low = change - np.sqrt((last - low2) ** 2 + (high1 - first) ** 2)  # Newcombe's hybrid score interval
    high = change + np.sqrt((high2 - last) ** 2 + (first - low1) ** 2)
    beats = adjusted < level
    table = pd.DataFrame(
        {
            "topic": tested, "posts": posts[tested].sum().astype(int).to_numpy(), "first": first * 100,
            "last": last * 100, "change": change * 100, "low": low * 100, "high": high * 100, "p": p,
            "p_adjusted": adjusted, "trend": np.where(beats & (change > 0), "grows", np.where(beats, "shrinks", "")),
        }
    )  # fmt: skip
    return table.sort_values(["change", "topic"], ascending=[False, True], kind="stable").reset_index(drop=True)
