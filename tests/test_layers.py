"""The layers hold at run time: the scoring script that Azure ML and azmlinfsrv load pulls in only serving code."""

from __future__ import annotations

import json
import subprocess
import sys

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
