"""topicli: topics for unlabelled social-media posts."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("topicli")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0"
