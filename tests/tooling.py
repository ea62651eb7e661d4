"""What a test does when a tool it needs is missing: skip on a developer's machine, fail in CI.

`make test` installs every tool the tests use (actionlint, Chromium), so in CI (``CI=true``) a
missing one is a broken set-up, not a reason to skip.
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def missing_tool(message: str) -> NoReturn:
    """Skip with ``message``, or fail with it when ``CI=true``."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{message} (CI=true: `make test` should have installed it)")
    pytest.skip(message)
