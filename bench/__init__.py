"""bench: measures Apache RocketMQ and Apache Pulsar for a control plane's southbound traffic."""

__version__ = "0.1.0"
