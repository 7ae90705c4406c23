import numpy as np
import pytest
from sklearn.base import clone
from sklearn.cluster import DBSCAN
from sklearn.metrics import adjusted_rand_score

import topicli.method.clustering as clustering
from topicli.errors import TopicliError
from topicli.method.clustering import (
    ClusterSearch,
    OutOfRangeWarning,
    approximate_neighbours,
    dbscan,
    graph_dbscan,
    knn_graph,
    nearest_neighbours,
    radius_graph,
)

from .conftest import tweets


@pytest.fixture(scope="module")
def vectors(embedder) -> np.ndarray:
    return embedder([row["text"] for row in tweets(800)])


def count_scorer(labels: np.ndarray) -> dict[str, float]:
    """A scorer that prefers coverage: enough to test the search mechanics."""
    return {"score": float(np.mean(labels >= 0)), "agreement": 1.0, "topics_used": 1}


@pytest.mark.parametrize(("eps", "min_samples"), [(0.45, 3), (0.55, 8)])
def test_dbscan_on_the_shared_graph_equals_exact_cosine_dbscan(
    vectors: np.ndarray, eps: float, min_samples: int
) -> None:
    graph = radius_graph(vectors, 0.6)
    ours, core = dbscan(graph, eps, min_samples)
    model = DBSCAN(eps=eps, min_samples=min_samples, metric="cosine").fit(vectors)
    exact = model.labels_
    assert np.array_equal(np.flatnonzero(core), model.core_sample_indices_)
    assert ours.max() >= 1
    assert np.array_equal(ours >= 0, exact >= 0)
    pairs = {(a, b) for a, b in zip(ours, exact, strict=True) if a >= 0}
    assert len(pairs) == ours.max() + 1, "same partition up to renaming"
    sizes = np.bincount(ours[ours >= 0])
    assert (np.diff(sizes) <= 0).all(), "cluster 0 is the largest"


def test_search_keeps_only_clusterings_in_range_and_picks_the_best_score(vectors: np.ndarray) -> None:
    search = ClusterSearch(min_topics=5, max_topics=40).fit(vectors, count_scorer)
    scored = [c for c in search.candidates_ if c.scores]
    assert len(search.candidates_) > len(scored) > 1
    assert all(5 <= c.n_clusters <= 40 for c in scored)
    assert all(not (5 <= c.n_clusters <= 40) for c in search.candidates_ if not c.scores)
    assert search.best_.score == max(c.score for c in scored)
    assert search.labels_.max() + 1 == search.best_.n_clusters


def test_fixed_parameters_give_one_candidate(vectors: np.ndarray) -> None:
    search = ClusterSearch(eps=0.5, min_samples=4).fit(vectors, count_scorer)
    assert [(c.eps, c.min_samples) for c in search.candidates_] == [(0.5, 4)]


def test_no_candidate_in_range_says_what_to_change_when_asked_to_stop(vectors: np.ndarray) -> None:
    with pytest.raises(TopicliError, match=r"no clustering has 500-900 clusters .*min_topics/max_topics"):
        ClusterSearch(min_topics=500, max_topics=900, out_of_range="error").fit(vectors, count_scorer)


def test_no_candidate_in_range_takes_the_nearest_with_a_warning(vectors: np.ndarray) -> None:
    low, high = 500, 900
    with pytest.warns(OutOfRangeWarning, match=rf"no clustering has {low}-{high} clusters.*took the nearest"):
        search = ClusterSearch(min_topics=low, max_topics=high).fit(vectors, count_scorer)
    counts = [c.n_clusters for c in search.candidates_ if c.n_clusters > 0]
    nearest = min(counts, key=lambda n: max(low - n, n - high))
    assert search.fallback_ and search.best_.n_clusters == nearest
    assert search.labels_.max() + 1 == nearest and search.best_.scores
    assert search.best_.score == max(c.score for c in search.candidates_ if c.n_clusters == nearest)


def test_an_unknown_out_of_range_policy_is_refused(vectors: np.ndarray) -> None:
    with pytest.raises(TopicliError, match="out_of_range 'ignore' unknown"):
        ClusterSearch(out_of_range="ignore").fit(vectors, count_scorer)


def test_hdbscan_option(vectors: np.ndarray) -> None:
    search = ClusterSearch(algorithm="hdbscan", min_topics=2, max_topics=100).fit(vectors, count_scorer)
    assert search.best_.algorithm == "hdbscan" and search.best_.min_cluster_size > 0
    assert 2 <= search.labels_.max() + 1 <= 100


@pytest.fixture(scope="module")
def many_vectors(embedder) -> np.ndarray:
    """The posts test_end_to_end embeds too, so the session's cache holds them once."""
    return embedder([row["text"] for row in tweets(2000)])


@pytest.mark.heavy
def test_approximate_neighbours_are_deterministic_and_near_exact(many_vectors: np.ndarray) -> None:
    distances, indices = approximate_neighbours(many_vectors, 20)
    again = approximate_neighbours(many_vectors, 20)
    assert np.array_equal(indices, again[1]) and np.array_equal(distances, again[0])
    exact_distances, exact = nearest_neighbours(many_vectors, 20)
    recall = np.mean([len(set(a) & set(b)) / 20 for a, b in zip(indices, exact, strict=True)])
    assert recall >= 0.95
    assert (indices != np.arange(len(indices))[:, None]).all(), "a post is not its own neighbour"
    assert (np.diff(distances, axis=1) >= -1e-6).all(), "nearest first"
    assert np.mean(np.abs(distances[:, 0] - exact_distances[:, 0]) < 1e-4) >= 0.99


@pytest.mark.parametrize(("share", "min_samples"), [(0.1, 3), (0.3, 8), (0.2, 20)])
def test_dbscan_on_the_approximate_graph_agrees_with_exact_dbscan(
    many_vectors: np.ndarray, share: float, min_samples: int
) -> None:
    distances, indices = approximate_neighbours(many_vectors, 30)
    eps = float(np.quantile(distances[:, min_samples - 1], share))
    ours, core = graph_dbscan(knn_graph(distances, indices, eps), eps, min_samples)
    exact = DBSCAN(eps=eps, min_samples=min_samples, metric="cosine").fit(many_vectors)
    assert ours.max() >= 1
    assert adjusted_rand_score(exact.labels_, ours) >= 0.98
    assert np.mean(core == np.isin(np.arange(len(core)), exact.core_sample_indices_)) >= 0.99


def test_search_above_the_exact_limit_uses_the_approximate_graph(
    vectors: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(clustering, "EXACT_LIMIT", 500)
    distances, indices = nearest_neighbours(vectors, 20)
    search = ClusterSearch(min_topics=5, max_topics=40).fit(vectors, count_scorer, None, distances, indices)
    exact = DBSCAN(eps=search.best_.eps, min_samples=search.best_.min_samples, metric="cosine").fit(vectors)
    assert 5 <= search.best_.n_clusters <= 40
    assert adjusted_rand_score(exact.labels_, search.labels_) >= 0.95


def test_search_above_the_search_limit_clusters_a_sample_and_joins_the_rest(
    many_vectors: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(clustering, "EXACT_LIMIT", 500)
    monkeypatch.setattr(clustering, "SEARCH_LIMIT", 1000)
    sample = clustering.search_sample(len(many_vectors))
    assert len(sample) == 1000 and np.array_equal(sample, np.unique(sample))
    distances, indices = nearest_neighbours(many_vectors, 20)
    assert np.isin(indices, sample).all(), "neighbours are sample posts"
    search = ClusterSearch(min_topics=5, max_topics=40).fit(many_vectors, count_scorer, None, distances, indices)
    again = ClusterSearch(min_topics=5, max_topics=40).fit(many_vectors, count_scorer)
    assert np.array_equal(search.labels_, again.labels_) and len(search.labels_) == len(many_vectors)
    assert not search.core_[np.setdiff1d(np.arange(len(many_vectors)), sample)].any(), "core points are sample posts"
    best = search.best_
    alone = DBSCAN(eps=best.eps, min_samples=best.min_samples, metric="cosine").fit(many_vectors[sample])
    assert adjusted_rand_score(alone.labels_, search.labels_[sample]) >= 0.95
    exact = DBSCAN(eps=best.eps, min_samples=2 * best.min_samples, metric="cosine").fit(many_vectors)
    assert adjusted_rand_score(exact.labels_, search.labels_) >= 0.5


def test_the_search_is_a_scikit_learn_estimator_that_refuses_an_unknown_algorithm(vectors: np.ndarray) -> None:
    search = ClusterSearch(algorithm="hdbscan", min_topics=3, eps=0.4)
    expected = {
        "algorithm": "hdbscan",
        "eps": 0.4,
        "max_topics": 100,
        "min_samples": 0,
        "min_topics": 3,
        "out_of_range": "nearest",
    }
    assert search.get_params() == expected
    assert clone(search).get_params() == search.get_params() and "min_topics=3" in repr(search)
    with pytest.raises(TypeError):
        ClusterSearch("dbscan")  # settings are keyword-only
    with pytest.raises(TopicliError, match="'kmeans' unknown; use one of dbscan, hdbscan"):
        ClusterSearch(algorithm="kmeans").fit(vectors, count_scorer)


@pytest.fixture(scope="module")
def copies() -> np.ndarray:
    """How many posts each of 300 distinct texts stands for: 1 to 5 copies."""
    return np.random.default_rng(1).integers(1, 6, size=300)


@pytest.mark.parametrize(("eps", "min_samples"), [(0.45, 5), (0.55, 12)])
def test_weighted_dbscan_on_distinct_texts_equals_dbscan_on_every_copy(
    vectors: np.ndarray, copies: np.ndarray, eps: float, min_samples: int
) -> None:
    distinct = vectors[:300]
    owner = np.repeat(np.arange(len(distinct)), copies)
    exact = DBSCAN(eps=eps, min_samples=min_samples, metric="cosine").fit(distinct[owner])
    exact_core = np.isin(np.arange(len(owner)), exact.core_sample_indices_)
    graph = radius_graph(distinct, 0.6)
    for ours, core in (dbscan(graph, eps, min_samples, copies), graph_dbscan(graph, eps, min_samples, copies)):
        assert core.sum() > 10 and ours.max() >= 1
        assert np.array_equal(core[owner], exact_core), "a text is core when its neighbourhood holds enough posts"
        assert np.array_equal(ours[owner] >= 0, exact.labels_ >= 0)
        assert adjusted_rand_score(exact.labels_[exact_core], ours[owner][exact_core]) == 1.0
        sizes = np.bincount(ours[owner][ours[owner] >= 0])
        assert (np.diff(sizes) <= 0).all(), "cluster 0 holds the most posts"


def test_reach_distances_count_a_texts_copies_as_posts(vectors: np.ndarray, copies: np.ndarray) -> None:
    distinct = vectors[:300]
    owner = np.repeat(np.arange(len(distinct)), copies)
    first = np.searchsorted(owner, np.arange(len(distinct)))
    distances, indices = nearest_neighbours(distinct, 20)
    every_copy, _ = nearest_neighbours(distinct[owner], 40)
    for m in (2, 5, 12):
        ours = clustering.reach_distances(distances, indices, m, copies)
        np.testing.assert_allclose(ours, every_copy[first, m - 1], atol=1e-6)
        assert (ours[copies > m] == 0).all()
    unweighted = clustering.reach_distances(distances, indices, 5)
    assert np.array_equal(unweighted, distances[:, 4])


def test_duplicates_never_put_zero_into_the_eps_grid(vectors: np.ndarray, copies: np.ndarray) -> None:
    """60 copies of one post (17 % of the posts) once made the grid's low quantiles 0, which DBSCAN refuses."""
    repeated = np.concatenate([vectors[:300], np.repeat(vectors[:1], 60, axis=0)])
    search = ClusterSearch(min_topics=2, max_topics=100).fit(repeated, count_scorer)
    assert min(c.eps for c in search.candidates_) == clustering.MIN_EPS
    assert len(set(search.labels_[[0, *range(300, 360)]])) == 1, "copies share a cluster"
    weights = copies.copy()
    weights[0] = 61
    weighted = ClusterSearch(min_topics=2, max_topics=100).fit(vectors[:300], count_scorer, weights=weights)
    assert min(c.eps for c in weighted.candidates_) >= clustering.MIN_EPS
    best = weighted.best_
    assert best.coverage == pytest.approx(float(np.average(weighted.labels_ >= 0, weights=weights)))
    alone = ClusterSearch(eps=best.eps, min_samples=best.min_samples).fit(vectors[:300], count_scorer)
    assert not np.array_equal(alone.core_, weighted.core_), "the weights decide core points"


def test_hdbscan_fits_a_texts_copies(vectors: np.ndarray, copies: np.ndarray) -> None:
    search = ClusterSearch(algorithm="hdbscan", min_topics=2, max_topics=100)
    search.fit(vectors[:300], count_scorer, weights=copies)
    assert len(search.labels_) == 300 and search.best_.n_clusters >= 2
    assert search.best_.coverage == pytest.approx(float(np.average(search.labels_ >= 0, weights=copies)))


def test_search_refuses_too_few_distinct_texts_and_a_bad_radius(vectors: np.ndarray) -> None:
    with pytest.raises(TopicliError, match="at least 3 distinct non-empty posts, got 2"):
        ClusterSearch().fit(vectors[:2], count_scorer, weights=np.array([500, 3]))
    for eps in (-1.0, float("nan"), 3.0):
        with pytest.raises(TopicliError, match="eps must lie in \\[0, 2\\]"):
            ClusterSearch(eps=eps, min_samples=3).fit(vectors, count_scorer)


@pytest.mark.parametrize("n", [10, 50, 100])
def test_small_inputs_get_topics_with_a_warning(every_post_shown: None, tmp_path, embedder, n: int) -> None:
    """10, 50 and 100 posts: no clustering has 20-100 clusters, yet every post gets a topic (the nearest candidate)."""
    import pandas as pd

    from topicli.config import load_settings
    from topicli.io import read_posts
    from topicli.method.pipeline import Pipeline

    from .conftest import EXAMPLES

    frame = pd.read_csv(EXAMPLES, dtype=str, keep_default_na=False)
    frame = frame[frame["caption"].str.strip() != ""].head(n)
    frame.to_csv(tmp_path / "posts.csv", index=False)
    pipeline = Pipeline(load_settings(None).method, embedder=embedder)  # every_post_shown's environment
    prepared = pipeline.prepare(read_posts(tmp_path / "posts.csv", ""))
    with pytest.warns(OutOfRangeWarning, match="took the nearest"):
        run = pipeline.cluster(prepared)
    assert run.reason.startswith("WARNING: no clustering has 20-100 clusters")
    result = pipeline.label(prepared, run)
    assert len(result.posts) == n and (result.posts["topic"] != "").all()
