"""The one error family of the suite.

Every expected failure (bad input, a broker that will not start, a port in use) is raised as a
``BenchError`` subclass. The CLI catches ``BenchError`` in one place, prints its one-line message
and exits non-zero; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class BenchError(Exception):
    """An expected failure with a one-line message that says what is wrong and what to do."""

    exit_code = 2


class ConfigError(BenchError):
    """A scenario, target or configuration file is invalid."""


class EnvironmentProblem(BenchError):
    """The machine lacks something the suite needs (Java, Maven, a free port...)."""


class ArtifactError(EnvironmentProblem):
    """Broker jars could not be resolved from Maven Central."""


class PortInUse(EnvironmentProblem):
    """A port the brokers need is already held by another listener."""


class BrokerStartError(BenchError):
    """A broker process exited during start, or did not become healthy in time."""


class BrokerUnavailable(BenchError):
    """A broker did not answer within its timeout."""


class DriverError(BenchError):
    """A driver operation failed against a broker."""


class RunInterrupted(BenchError):
    """A run stopped early (Ctrl-C, SIGTERM); finished steps are kept."""

    exit_code = 130
