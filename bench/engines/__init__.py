"""Load engines: the worker protocol, the Python worker, and the JVM worker's launcher."""
