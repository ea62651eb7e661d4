"""``bench calibrate``: is the suite's own load generator the bottleneck?

For each broker, against the same local broker and with the same message size, one after the
other (both share this machine's cores with the broker, so they never run at once):

1. the broker's native Java tool at full speed: ``pulsar-perf produce`` (Pulsar 4.0 runs it as
   ``org.apache.pulsar.testclient.PulsarPerfTestTool <client.conf> produce``; its
   ``PerformanceProducer`` has no ``main`` of its own), batching off as in our driver, and
   RocketMQ's ``org.apache.rocketmq.example.benchmark.Producer`` (remoting, 64 threads of sync
   sends, its defaults);
2. our driver closed-loop at maximum rate from ``--workers`` worker processes, async sends.

The ratio bench/native says how much of the broker's capacity the suite can drive. RocketMQ
gets more rows than Pulsar: the 5.x gRPC client through the proxy (what the scenarios use by
default), async over remoting straight to the broker (the same protocol as the native tool),
and ONEWAY over remoting, whose rate is counted by the broker (queue offsets of the topic),
since nothing is acknowledged.

Rates: the native tools report their own rates (pulsar-perf's per-second producer stats after
the warm-up, averaged; RocketMQ's "Send TPS", a moving average over its last <= 10 s, taken at
the end: with ``--seconds`` below 10 that window reaches into the warm-up). Ours is acknowledged
messages over the measured window (warm-up excluded).

The modules: ``native`` (the native tools), ``rates`` (our workers' rates), ``rows`` (a row per
broker, engine, path and mode; the table), ``cli`` (the command).
"""

from bench.runner.calibrate.cli import calibrate_cmd
from bench.runner.calibrate.native import (
    _check_native_output,
    native_pulsar,
    native_rocketmq,
    parse_pulsar_perf,
    parse_rocketmq_producer,
)
from bench.runner.calibrate.rates import BenchRate, bare_pulsar, bench_rate
from bench.runner.calibrate.rows import CalibrationRow, _format_table, calibrate_broker

__all__ = [
    "BenchRate",
    "CalibrationRow",
    "_check_native_output",
    "_format_table",
    "bare_pulsar",
    "bench_rate",
    "calibrate_broker",
    "calibrate_cmd",
    "native_pulsar",
    "native_rocketmq",
    "parse_pulsar_perf",
    "parse_rocketmq_producer",
]
