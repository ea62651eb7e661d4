"""The Python engine: a worker process on the clients in the project's dependencies."""
