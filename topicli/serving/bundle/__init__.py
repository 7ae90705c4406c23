"""The model bundle: what a server needs to give new posts a topic, as plain files that are safe to load.

`format` describes it once (the pydantic `Manifest` and the `Bundle` read); `write` builds and saves
one from a labelled run, `read` checks one whole, `model` serves it (`BundleModel`), `joining` is how
a new post joins a cluster. Nothing outside this package reads a manifest's keys.
"""

from topicli.serving.bundle.format import (
    ARRAYS,
    CLASSIFIER_FOLDER,
    ENCODER_FOLDER,
    FORMAT_VERSION,
    MANIFEST,
    Bundle,
    Manifest,
)
from topicli.serving.bundle.joining import core_radii, join_clusters
from topicli.serving.bundle.model import SELF_DISTANCE, BundleModel, Predictions
from topicli.serving.bundle.read import find_bundle, read_bundle
from topicli.serving.bundle.versions import BundleVersionWarning, package_versions, version_differences
from topicli.serving.bundle.write import BundleContents, bundle_contents, renamed_bundle, save_bundle, write_bundle

__all__ = [
    "ARRAYS",
    "CLASSIFIER_FOLDER",
    "ENCODER_FOLDER",
    "FORMAT_VERSION",
    "MANIFEST",
    "SELF_DISTANCE",
    "Bundle",
    "BundleContents",
    "BundleModel",
    "BundleVersionWarning",
    "Manifest",
    "Predictions",
    "bundle_contents",
    "core_radii",
    "find_bundle",
    "join_clusters",
    "package_versions",
    "read_bundle",
    "renamed_bundle",
    "save_bundle",
    "version_differences",
    "write_bundle",
]
