"""`.ci/run` itself: its preamble must not fail the run before the tests start."""

import os
import stat
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _stub(bindir: Path, name: str, body: str) -> None:
    path = bindir / name
    path.write_text("#!/usr/bin/env bash\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


def test_ci_run_survives_a_version_command_that_writes_after_its_first_line(tmp_path):
    # A Maven that is still writing when its first line has been read: a reader that closes
    # the pipe after one line made it exit non-zero (EPIPE), and pipefail ended CI in 1 s.
    _stub(tmp_path, "mvn", 'echo "Apache Maven 9"; sleep 0.3; seq 200 | sed s/.*/more/\n')
    _stub(tmp_path, "java", 'echo "openjdk version 99" >&2; sleep 0.3; echo more >&2\n')
    _stub(tmp_path, "make", 'echo "make $*"\n')
    env = {**os.environ, "PATH": f"{tmp_path}{os.pathsep}{os.environ['PATH']}", "CI": "true"}
    done = subprocess.run(
        ["bash", str(ROOT / ".ci" / "run")],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "Apache Maven 9" in lines
    assert "openjdk version 99" in lines
    assert "make test" in lines
    assert "more" not in lines
