"""The nightly CI workflow passes actionlint (with shellcheck on its scripts, when installed).

actionlint is not a Python package: install it with
``go install github.com/rhysd/actionlint/cmd/actionlint@latest``. The test looks for it on
PATH, in ``$ACTIONLINT``, and in Go's default install directories, and skips (saying how to get
it) when it is nowhere.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from tests.tooling import missing_tool

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = ROOT / ".github" / "workflows" / "nightly.yml"


def _actionlint() -> str | None:
    candidates = [
        os.environ.get("ACTIONLINT", ""),
        shutil.which("actionlint") or "",
        str(Path(sys.executable).parent / "actionlint"),  # where `make test` installs it
    ]
    gopath = os.environ.get("GOPATH") or str(Path.home() / "go")
    candidates += [str(Path(gopath) / "bin" / "actionlint"), "/root/go/bin/actionlint"]
    for c in candidates:
        if c and Path(c).is_file() and os.access(c, os.X_OK):
            return c
    return None


def test_nightly_workflow_passes_actionlint() -> None:
    exe = _actionlint()
    if exe is None:
        missing_tool(
            "actionlint not found on PATH, $ACTIONLINT, the venv or ~/go/bin: `make tools` "
            "installs it"
        )
    result = subprocess.run(
        [exe, "-no-color", str(WORKFLOW)], capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_nightly_workflow_shape() -> None:
    doc = yaml.safe_load(WORKFLOW.read_text())
    # YAML 1.1 reads the key `on` as True.
    triggers = doc.get("on", doc.get(True))
    assert {"schedule", "workflow_dispatch"} <= set(triggers)
    steps = doc["jobs"]["nightly"]["steps"]
    uses = [s.get("uses", "") for s in steps]
    assert any(u.startswith("actions/setup-java@") for u in uses)
    java = next(s for s in steps if s.get("uses", "").startswith("actions/setup-java@"))
    assert java["with"] == {"distribution": "temurin", "java-version": "17"}
    python = next(s for s in steps if s.get("uses", "").startswith("actions/setup-python@"))
    assert python["with"]["python-version"] == "3.11" and python["with"]["cache"] == "pip"
    runs = " ".join(s.get("run", "") for s in steps)
    assert "make nightly" in runs
    save = next(s for s in steps if s.get("uses", "").startswith("actions/cache/save@"))
    # The history is kept even when the benchmark exits 3 (regression).
    assert save["if"] == "always()"
    assert any("~/.cache/bench/m2" in str(s.get("with", {}).get("path", "")) for s in steps)
    uploads = [s for s in steps if s.get("uses", "").startswith("actions/upload-artifact@")]
    paths = " ".join(str(s["with"]["path"]) for s in uploads)
    assert "reports/nightly.html" in paths and "reports/runs/" in paths
