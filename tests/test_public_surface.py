"""The public surface: what `topicli` exports for library users, and each package's `__all__`."""

from __future__ import annotations

import importlib
import importlib.util

import pytest

import topicli
from tests import import_graph
from tests.test_layers import loaded_modules

PACKAGES = ("cli", "cloud", "method", "report", "serving", "spark")


def test_import_topicli_loads_nothing_but_the_version() -> None:
    loaded = loaded_modules("import topicli")
    assert sorted(m for m in loaded if m.startswith("topicli")) == ["topicli"]
    assert not {"numpy", "pandas", "torch", "sklearn", "typer"} & loaded


def test_the_exported_names_are_the_library_s_own_objects() -> None:
    defined_in = {
        "Pipeline": "topicli.method.pipeline",
        "read_posts": "topicli.io",
        "BundleModel": "topicli.serving.bundle",
        "Settings": "topicli.config",
        "load_settings": "topicli.config",
    }
    for name, module in defined_in.items():
        assert name in topicli.__all__
        assert getattr(topicli, name) is getattr(importlib.import_module(module), name)
    assert all(hasattr(topicli, name) for name in topicli.__all__)
    assert set(topicli.__all__) <= set(dir(topicli))
    with pytest.raises(AttributeError, match="no attribute 'clustering'"):
        _ = topicli.clustering


def test_imports_across_packages_go_through_each_package_s_all() -> None:
    """A module that another package imports is in that package's `__all__`; the others stay inside it."""
    imports = import_graph.edges(import_graph.build(), at_import=False)
    for package in PACKAGES:
        prefix = f"topicli.{package}"
        public = set(importlib.import_module(prefix).__all__)
        outside = {m for m in imports if m != prefix and not m.startswith(f"{prefix}.")}
        reached = {target.split(".")[2] for m in outside for target in imports[m] if target.startswith(f"{prefix}.")}
        assert reached - public == set(), f"add them to {prefix}.__all__, or import them no longer"
        for name in public:
            assert hasattr(importlib.import_module(prefix), name) or importlib.util.find_spec(f"{prefix}.{name}")
