"""Measure one JVM worker's throughput against brokers that `bench infra up` started.

    python engines/jvm/measure.py --infra-dir DIR pulsar direct --seconds 10 [--warmup 10]

Closed loop (or ``--rate``), async, 1 KiB, 2 fresh topics, one subscription each: prints
messages acknowledged and consumed per second, the worker's CPU (utime + stime from
/proc/<pid>/stat) per message, latencies, and the ledger's reconciliation. With ``--warmup``
the figures are also given for the measured part only (after the JIT and the clients settle).
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import subprocess
import threading
import time
from typing import Any

from bench.drivers.base import open_driver
from bench.engines import protocol as p
from bench.engines.jvm import ensure_built
from bench.engines.spec import LoadSpec
from bench.infra.manager import Infra
from bench.metrics import histograms
from bench.metrics.intervals import IntervalStats
from bench.metrics.ledger import LedgerBook


def _cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("broker", choices=["pulsar", "rocketmq"])
    ap.add_argument("path", choices=["direct", "proxy"])
    ap.add_argument("--infra-dir", required=True)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--warmup", type=float, default=0.0)
    ap.add_argument("--rate", type=float, default=None)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--max-in-flight", type=int, default=1000)
    ap.add_argument("--subscriptions", type=int, default=1)
    ap.add_argument("--settings", default="{}", help="driver settings as JSON")
    ap.add_argument("--stderr", default="/dev/null", help="where the worker's log goes")
    args = ap.parse_args()

    ep = Infra(args.infra_dir).endpoints(args.broker)
    tag = f"{int(time.time())}"
    topics = (f"jm{tag}a", f"jm{tag}b")
    if args.broker == "rocketmq":
        with open_driver("rocketmq", ep) as driver:
            failed = [r for r in driver.create_topics(list(topics)) if not r.ok]
            assert not failed, failed
    spec = LoadSpec(
        worker_id="m0",
        broker=args.broker,
        endpoints=LoadSpec.endpoints_text(ep),
        run_id=f"measure-{tag}",
        topics=topics,
        path=args.path,
        rate_per_s=args.rate,
        max_in_flight=args.max_in_flight,
        message_size=args.size,
        subscriptions_per_topic=args.subscriptions,
        warmup_s=args.warmup,
        duration_s=args.seconds,
        deadline_s=args.warmup + args.seconds + 120,
        driver_settings=json.loads(args.settings),
    )
    with open(args.stderr, "wb") as log:
        proc = subprocess.Popen(
            ensure_built(print).argv(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log
        )
    assert proc.stdin is not None and proc.stdout is not None
    events: queue.Queue[p.Event | None] = queue.Queue()
    stdout = proc.stdout

    def read() -> None:
        for line in stdout:
            events.put(p.decode_event(line))
        events.put(None)

    threading.Thread(target=read, daemon=True).start()
    seen: list[p.Event] = []

    def send(command: p.Command) -> None:
        assert proc.stdin is not None
        proc.stdin.write(p.encode(command))
        proc.stdin.flush()

    def wait(kind: str, timeout_s: float = 120.0) -> Any:
        deadline = time.monotonic() + timeout_s
        while (event := events.get(timeout=max(0.1, deadline - time.monotonic()))) is not None:
            seen.append(event)
            if event.event == kind:
                return event
            if isinstance(event, p.Failed):
                raise SystemExit(f"worker failed: {event.error}")
        raise SystemExit(f"worker ended before {kind}")

    send(p.Setup(spec=spec.to_protocol()))
    wait("ready")
    cpu0, t0 = _cpu_s(proc.pid), time.monotonic()
    mark: dict[str, float] = {}

    def at_warm() -> None:
        time.sleep(args.warmup)
        mark.update(cpu=_cpu_s(proc.pid), t=time.monotonic())

    send(p.Go())
    if args.warmup:
        threading.Thread(target=at_warm, daemon=True).start()
    wait("producers_done", args.warmup + args.seconds + 60)
    cpu1, t1 = _cpu_s(proc.pid), time.monotonic()
    send(p.Drain(timeout_s=60, stall_s=15))
    drained: p.Drained = wait("drained", 90)
    send(p.Stop())
    wait("exit", 60)
    proc.wait(15)

    stats = [IntervalStats.from_json(json.dumps(e.stats)) for e in seen if isinstance(e, p.Stats)]
    totals: dict[str, int] = {}
    for s in stats:
        for k, v in s.counters.items():
            totals[k] = totals.get(k, 0) + v
    book = LedgerBook.from_dict(drained.ledger)
    name = f"{args.broker}/{args.path}"
    for r in book.reconcile():
        print(f"{r.topic}/{r.subscription}: acked {r.acked} received {r.received} lost {r.lost} ")
    for h in ("publish", "e2e"):
        merged = histograms.merge(s.histograms[h] for s in stats if h in s.histograms)
        print(h, "us", histograms.summary(merged))
    acked, received, wall = totals.get("acked", 0), totals.get("received", 0), t1 - t0
    print(
        f"{name} all {wall:.1f} s: acked {acked / wall:.0f}/s, consumed {received / wall:.0f}/s, "
        f"worker CPU {(cpu1 - cpu0) / wall:.2f} cores, "
        f"{(cpu1 - cpu0) * 1e6 / max(1, acked + received):.1f} us per message sent or received; "
        f"drained {drained.ok} ({drained.undelivered} undelivered)"
    )
    measured = [s for s in stats if not s.counters.get("interval.warmup")]
    if args.warmup and measured and mark:
        span = (measured[-1].end_ns - measured[0].start_ns) / 1e9
        m_acked = sum(s.counters.get("acked", 0) for s in measured)
        m_received = sum(s.counters.get("received", 0) for s in measured)
        cpu = cpu1 - mark["cpu"]
        print(
            f"{name} after warm-up {span:.1f} s: acked {m_acked / span:.0f}/s, "
            f"consumed {m_received / span:.0f}/s, worker CPU {cpu / (t1 - mark['t']):.2f} cores, "
            f"{cpu * 1e6 / max(1, m_acked + m_received):.1f} us per message sent or received"
        )


if __name__ == "__main__":
    main()
