"""topicli: topics for unlabelled social-media posts.

The library's public surface, for a program that uses topicli rather than its command line:

    from topicli import Pipeline, load_settings, read_posts, BundleModel

    settings = load_settings()                    # topicli.toml, TOPICLI_* variables, defaults
    posts = read_posts(Path("posts.csv"))         # a CSV, JSON Lines or Parquet file of posts
    pipeline = Pipeline(settings)                 # the encoder, cls_model and topic list
    model = BundleModel.load(Path("topicli-out/posts/bundle"))  # a run's bundle, to score new posts
    model.predict(["new post"])

The names load on first use (module `__getattr__`), so `import topicli`, which every topicli
module runs first, loads nothing but the version: the CLI and the scoring script pay only for
what they use.
"""

from __future__ import annotations

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

try:
    __version__ = version("topicli")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0"

# each public name → the module that defines it
_EXPORTS = {
    "Pipeline": "topicli.method.pipeline",
    "read_posts": "topicli.io",
    "Posts": "topicli.io",
    "BundleModel": "topicli.serving.bundle",
    "read_bundle": "topicli.serving.bundle",
    "Settings": "topicli.config",
    "load_settings": "topicli.config",
    "TopicliError": "topicli.errors",
}

__all__ = [
    "BundleModel",
    "Pipeline",
    "Posts",
    "Settings",
    "TopicliError",
    "__version__",
    "load_settings",
    "read_bundle",
    "read_posts",
]

if TYPE_CHECKING:  # the same names, for type checkers and editors
    from topicli.config import Settings, load_settings
    from topicli.errors import TopicliError
    from topicli.io import Posts, read_posts
    from topicli.method.pipeline import Pipeline
    from topicli.serving.bundle import BundleModel, read_bundle


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'topicli' has no attribute {name!r}")
    value = getattr(import_module(_EXPORTS[name]), name)
    globals()[name] = value  # looked up once
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
