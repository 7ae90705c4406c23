"""The layers hold at run time: the scoring script that Azure ML and azmlinfsrv load pulls in only serving code."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

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
