"""The layers hold at run time: the scoring script that Azure ML and azmlinfsrv load pulls in only serving code.

And the import graph stays shallow: no cycle, and no chain of module-level imports longer than
`MAX_CHAIN` modules (tests/import_graph.py; `python -m tests.import_graph` prints the chains).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from tests import import_graph

MAX_CHAIN = 10

# Modules the scoring path must never load: the CLI and its rendering, the Azure ML SDK, training code.
NOT_FOR_SCORING = (
    "typer",
    "rich",
    "azure.ai.ml",
    "topicli.cli",
    "topicli.cloud",
    "topicli.report",
    "topicli.method.training",
)


def loaded_modules(statement: str) -> set[str]:
    """The modules a fresh interpreter holds after running `statement`."""
    code = f"import json, sys\n{statement}\nprint(json.dumps(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300)
    return set(json.loads(done.stdout.strip().splitlines()[-1]))


def test_the_scoring_script_loads_no_cli_azure_sdk_or_training_code() -> None:
    loaded = loaded_modules("import topicli.serving.score")
    assert {"topicli.serving.bundle", "topicli.serving.protocol", "topicli.method.labelling"} <= loaded
    offending = sorted(m for m in loaded if any(m == name or m.startswith(f"{name}.") for name in NOT_FOR_SCORING))
    assert offending == []


PACKAGE = Path(__file__).resolve().parents[1] / "topicli"
BUNDLE_PACKAGE = PACKAGE / "serving" / "bundle"
RAW_MANIFEST_READ = re.compile(
    r"""manifest\w*\s*\[\s*["']"""  # manifest["topics"], bundle_manifest['encoder']
    r"""|manifest\w*\.get\(\s*["']"""  # manifest.get("calibration")
    r"""|/\s*MANIFEST\s*\)\.read_"""  # (folder / MANIFEST).read_text(): the file read by hand
    r"""|["']manifest\.json["']\s*\)\.read_"""
)


def test_nothing_outside_the_bundle_package_reads_raw_manifest_keys() -> None:
    """The bundle format is described once (`topicli.serving.bundle.format.Manifest`): every other module reads
    the validated model that `read_bundle` returns, never the JSON's keys."""
    offending = [
        f"{path.relative_to(PACKAGE.parent)}:{number}: {line.strip()}"
        for path in sorted(PACKAGE.rglob("*.py"))
        if not path.is_relative_to(BUNDLE_PACKAGE)
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if RAW_MANIFEST_READ.search(line)
    ]
    assert offending == []


def test_the_raw_manifest_pattern_catches_the_reads_it_forbids() -> None:
    forbidden = (
        'm = manifest["topics"]',
        "x = bundle_manifest['encoder']",
        'manifest.get("calibration")',
        "json.loads((bundle / MANIFEST).read_text())",
        'json.loads((b / "manifest.json").read_bytes())',
    )
    for line in forbidden:
        assert RAW_MANIFEST_READ.search(line), line
    for line in ("manifest.topics", "read_bundle(folder).manifest.encoder.name", "(bundle / MANIFEST).is_file()"):
        assert not RAW_MANIFEST_READ.search(line), line


def test_the_import_graph_has_no_cycle_and_no_chain_longer_than_ten_modules() -> None:
    graph = import_graph.build()
    everything = import_graph.edges(graph, at_import=False)
    assert import_graph.cycles(everything) == []
    at_import = import_graph.edges(graph, at_import=True)
    assert {"topicli.method.base", "topicli.method.scoring"} <= at_import.keys()
    chain = import_graph.longest_chain(at_import)
    assert len(chain) <= MAX_CHAIN, " -> ".join(chain)


def test_the_chain_counts_module_level_imports_only() -> None:
    # cli.app imports its command modules at module level, and the library only inside commands
    at_import = import_graph.edges(import_graph.build(), at_import=True)
    assert "topicli.cli.topics" in at_import["topicli.cli.app"]
    assert not any(target.startswith("topicli.method") for target in at_import["topicli.cli.topics"])
    assert import_graph.cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert import_graph.longest_chain({"a": {"b", "c"}, "b": {"c"}, "c": set()}) == ["a", "b", "c"]


def test_tokens_runs_where_topicli_is_absent() -> None:
    """Triton runs method/tokens.py as model.py with numpy and tokenizers only; topicli cannot be imported there."""
    path = Path(import_graph.source("topicli.method.tokens"))
    code = (
        "import importlib.util, sys\n"
        "sys.modules['topicli'] = None  # any import of topicli now fails\n"
        f"spec = importlib.util.spec_from_file_location('model', {str(path)!r})\n"
        "module = importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(module)\n"
        "print(module.TEXT)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "TEXT"
