"""A RocketMQ pull consumer over the remoting protocol: PULL_MESSAGE straight to the brokers.

The 5.x gRPC client consumes through the proxy at about a millisecond of CPU a message; this
consumer talks to the brokers the way the Java ``DefaultMQPushConsumer`` does underneath, in
pure Python, over :mod:`bench.protocol.remoting` (one pipelined connection per broker).

What it does, for one consumer group and a set of topics:

- Queue assignment is ours (no heartbeat, no broker-side rebalance): the readable queues of
  each topic, sorted by (broker name, queue id), are dealt out like
  ``AllocateMessageQueueAveragely`` among ``consumer_count`` consumers; this one takes the share
  of ``consumer_index``.
- Start offsets: a queue the group has a committed offset for resumes there
  (QUERY_CONSUMER_OFFSET with ``setZeroIfNotFound=false``); otherwise the group starts at the
  queue's end (GET_MAX_OFFSET), so a new group sees only messages sent after it subscribed.
- Pulls carry the SUBSCRIPTION flag with subscription ``*`` and expression type ``TAG``, so the
  broker builds the subscription from the request (this needs the broker defaults
  ``autoCreateSubscriptionGroup=true`` and ``rejectPullConsumerEnable=false``); the SUSPEND flag
  (long polling: the broker holds an empty pull up to ``suspend_s``, and its hold service may
  add up to 5 s more); and the COMMIT_OFFSET flag with the offset delivered so far. Each queue
  has one pull in flight; the queues of a broker share its connection.
- Offsets are also committed with a oneway UPDATE_CONSUMER_OFFSET every ``commit_interval_s``
  for queues whose last pull did not carry the latest offset, and with acknowledged updates on
  :meth:`PullConsumer.unsubscribe` and :meth:`PullConsumer.close`.
- Failures (a broker killed, a refusal, a malformed answer) are counted and reported through
  ``on_error``, never raised into the pull loop: the queue retries with a bounded exponential
  backoff, and the route is looked up again (a restarted broker is picked up where it
  registers).

Threads: one loop thread owns all queue state: it sends requests, handles their answers
(posted to it by the connections' reader threads), decodes messages and calls ``on_message``.
A route thread looks routes up every ``route_refresh_s`` and on demand. ``on_message`` runs on
the loop thread, one message at a time, in queue order per queue; it should be quick, as the
next pull of its queue is already in flight but no other answer is handled meanwhile.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, fields
from typing import Any, Final, TypeVar

from bench.errors import BenchError, BrokerUnavailable, DriverError
from bench.protocol.remoting import RemotingClient, RemotingError
from bench.protocol.remoting_codec import (
    ProtocolError,
    RemotingCommand,
    RequestCode,
    ResponseCode,
    TopicRoute,
    encode_command,
    stored_message_bodies,
)

__all__ = [
    "PULL_COMMIT_OFFSET",
    "PULL_SUBSCRIPTION",
    "PULL_SUSPEND",
    "OffsetMoved",
    "PullConsumer",
    "PullStats",
    "SubscribeTimeout",
    "allocate_averagely",
    "readable_queues",
]

log = logging.getLogger(__name__)

T = TypeVar("T")
OnMessage = Callable[[bytes, int], None]
"""A received message: its body and the receive time (``time.time_ns()`` of its pull answer)."""
OnError = Callable[[BaseException], None]

# PullSysFlag bits.
PULL_COMMIT_OFFSET: Final = 0x1
PULL_SUSPEND: Final = 0x2
PULL_SUBSCRIPTION: Final = 0x4

# The loop wakes at least this often (timers, stop) even when nothing arrives.
_TICK: Final = 0.25
# Events handled per wake-up before timers are looked at again.
_DRAIN: Final = 256
# First retry delay after a failure; doubled per consecutive failure up to max_backoff_s.
_BASE_BACKOFF: Final = 0.05
# Route lookups asked for by failures are at most this frequent.
_MIN_ROUTE_INTERVAL: Final = 1.0
# PULL_RETRY_IMMEDIATELY answers in a row before the queue waits a little between them.
_RETRY_STREAK: Final = 3
_RETRY_STREAK_DELAY: Final = 0.05
# The broker's hold service checks suspended pulls every 5 s, so an empty long poll is
# answered up to suspend_s + 5 s after it was sent; a pull gets this much more on top.
_HOLD_SLACK_S: Final = 8.0

_EV_PULL: Final = 1
_EV_INIT: Final = 2
_EV_CALL: Final = 3
_EV_ROUTES: Final = 4
_EV_STOP: Final = 5


class SubscribeTimeout(BrokerUnavailable):
    """A subscription's start offsets were not known in time (a broker did not answer)."""


class OffsetMoved(DriverError):
    """The broker moved a queue's offset (PULL_OFFSET_MOVED): messages may have been skipped."""


def allocate_averagely(queues: Sequence[T], index: int, count: int) -> list[T]:
    """This consumer's share of ``queues`` (already sorted), as AllocateMessageQueueAveragely.

    Consumer ``index`` of ``count`` gets one contiguous slice; the first ``len % count``
    consumers get one queue more than the others; with fewer queues than consumers, the last
    consumers get none.
    """
    if count < 1 or not 0 <= index < count:
        raise ValueError(f"consumer index {index} is not within 0..{count - 1}")
    n = len(queues)
    if n == 0:
        return []
    mod = n % count
    bigger = mod > 0 and index < mod
    average = 1 if n <= count else n // count + (1 if bigger else 0)
    start = index * average if bigger else index * average + mod
    take = min(average, n - start)
    return list(queues[start : start + take]) if take > 0 else []


def readable_queues(route: TopicRoute) -> list[tuple[str, int]]:
    """(broker name, queue id) of every queue of ``route`` consumers may pull, sorted.

    As the Java client builds its subscribe table: every readable queue data contributes its
    ``readQueueNums`` queues, whether or not its broker's master is registered right now.
    """
    return sorted(
        {
            (qd.broker_name, i)
            for qd in route.queues
            if qd.readable
            for i in range(qd.read_queue_nums)
        }
    )


@dataclass(slots=True)
class PullStats:
    """Counters of one :class:`PullConsumer` (a snapshot from :meth:`PullConsumer.stats`)."""

    messages: int = 0
    """Messages handed to ``on_message``."""
    pulls: int = 0
    """Pull answers handled (any code)."""
    pulls_found: int = 0
    pulls_empty: int = 0
    """PULL_NOT_FOUND (long poll ended empty) and PULL_RETRY_IMMEDIATELY answers."""
    offset_moved: int = 0
    skipped: int = 0
    """Messages below the requested offset in an answer (not delivered again)."""
    errors: int = 0
    """Failed requests (no answer, disconnection, refusal, malformed answer)."""
    handler_errors: int = 0
    """Exceptions raised by ``on_message`` (swallowed)."""
    route_lookups: int = 0
    commits: int = 0
    """UPDATE_CONSUMER_OFFSET requests sent (the pulls' own commits not counted)."""


class _Topic:
    __slots__ = ("handler", "name", "queues", "waiters")

    def __init__(self, name: str, handler: OnMessage) -> None:
        self.name = name
        self.handler = handler
        self.queues: dict[tuple[str, int], _Queue] = {}
        self.waiters: list[Future[None]] = []


class _Queue:
    """One assigned message queue; touched by the loop thread only."""

    __slots__ = (
        "active",
        "addr",
        "broker_name",
        "busy",
        "commit_acked",
        "commit_sent",
        "delivered",
        "ext",
        "failures",
        "init_step",
        "key",
        "offset",
        "queue_id",
        "retry_streak",
        "timer",
        "topic",
    )

    def __init__(self, topic: _Topic, broker_name: str, queue_id: int, group: str) -> None:
        self.topic = topic
        self.broker_name = broker_name
        self.queue_id = queue_id
        self.key = (topic.name, broker_name, queue_id)
        self.addr: str | None = None
        self.offset = -1  # the next offset to pull; -1 until the start offset is known
        self.delivered = -1  # every message below it was handed to on_message
        self.commit_sent = -1  # the last offset committed (pull flag or update), maybe unanswered
        self.commit_acked = -1  # the last offset the broker confirmed it committed
        self.init_step = 0  # 0: ask for a committed offset; 1: ask for the queue's end
        self.busy = False  # a request of this queue is in flight
        self.active = True
        self.failures = 0
        self.retry_streak = 0
        self.timer = 0  # the id of the pending retry timer, 0 if none
        self.ext = {
            "consumerGroup": group,
            "topic": topic.name,
            "queueId": str(queue_id),
            "bname": broker_name,
        }


@dataclass(slots=True)
class _Unsubscribed:
    commits: list[tuple[_Queue, int, Future[RemotingCommand]]]


class PullConsumer:
    """A pull consumer of one consumer group over the remoting protocol (see the module doc).

    Create it in the process that uses it; :meth:`close` it (or use it as a context manager).
    """

    def __init__(
        self,
        group: str,
        *,
        namesrv: str | Sequence[str] | None = None,
        client: RemotingClient | None = None,
        consumer_index: int = 0,
        consumer_count: int = 1,
        on_error: OnError | None = None,
        batch: int = 32,
        suspend_s: float = 5.0,
        timeout_s: float = 3.0,
        subscribe_timeout_s: float = 15.0,
        route_refresh_s: float = 30.0,
        commit_interval_s: float = 5.0,
        max_backoff_s: float = 2.0,
    ) -> None:
        """Start the consumer's threads; nothing is pulled before :meth:`subscribe`.

        Give either ``namesrv`` (the consumer opens, and closes, its own remoting client) or
        ``client`` (shared: it stays open on close, and long polls still in flight are left
        to finish on the broker). ``batch`` is maxMsgNums per pull (the broker caps it at 32
        from memory); ``suspend_s`` is how long the broker holds an empty pull; ``timeout_s``
        bounds every other request. ``on_error`` receives each failure (on the consumer's
        threads; it must not block); without it failures are logged at debug level.
        """
        if (namesrv is None) == (client is None):
            raise ValueError("give exactly one of namesrv and client")
        allocate_averagely([], consumer_index, consumer_count)  # validates index and count
        if batch < 1 or suspend_s <= 0 or timeout_s <= 0:
            raise ValueError("batch, suspend_s and timeout_s must be positive")
        self.group = group
        self.consumer_index = consumer_index
        self.consumer_count = consumer_count
        self._owns_client = client is None
        self._client = (
            client
            if client is not None
            else RemotingClient(namesrv or (), timeout=timeout_s, connect_timeout=timeout_s)
        )
        self._on_error = on_error
        self._batch = str(batch)
        self._suspend_ms = str(int(suspend_s * 1000))
        self._pull_timeout = suspend_s + _HOLD_SLACK_S
        self._timeout = timeout_s
        self._subscribe_timeout = subscribe_timeout_s
        self._route_refresh = route_refresh_s
        self._commit_interval = commit_interval_s
        self._max_backoff = max(max_backoff_s, _BASE_BACKOFF)
        self._stats = PullStats()
        self.last_error: str | None = None
        """The latest failure, as one line (for error messages and diagnostics)."""

        # Loop-thread state.
        self._topics: dict[str, _Topic] = {}
        self._timers: list[tuple[float, int, _Queue]] = []
        self._timer_ids = itertools.count(1)
        # Delivered offsets of queues that left the assignment (a route change): resumed from
        # if they come back while this is the group's only consumer.
        self._parked: dict[tuple[str, str, int], int] = {}

        # Shared with other threads.
        self._inbox: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._topic_names: tuple[str, ...] = ()
        self._closed = False
        self._stop = threading.Event()
        self._route_wake = threading.Event()
        self._loop_thread = threading.Thread(
            target=self._run, name=f"rmq-pull-{group}", daemon=True
        )
        self._route_thread = threading.Thread(
            target=self._route_loop, name=f"rmq-pull-route-{group}", daemon=True
        )
        self._loop_thread.start()
        self._route_thread.start()

    def __repr__(self) -> str:
        return (
            f"<PullConsumer {self.group} {self.consumer_index}/{self.consumer_count}: "
            f"{len(self._topic_names)} topics, {self._stats.messages} messages>"
        )

    # --- public API ----------------------------------------------------------------------

    @property
    def topics(self) -> tuple[str, ...]:
        """The topics subscribed (in subscription order)."""
        return self._topic_names

    def stats(self) -> PullStats:
        """A snapshot of the counters."""
        s = self._stats
        return PullStats(**{f.name: getattr(s, f.name) for f in fields(PullStats)})

    def subscribe(self, topic: str, on_message: OnMessage, *, timeout: float | None = None) -> None:
        """Start delivering ``topic`` to ``on_message``; return once every assigned queue's start
        offset is known (so a message sent after this returns is delivered).

        Subscribing a topic again replaces its handler. Raises ``TopicNotFound`` if the name
        server has no route, ``BrokerUnavailable`` if it cannot be asked, and
        :class:`SubscribeTimeout` if the brokers do not give start offsets within ``timeout``
        (the topic is then not subscribed).
        """
        if self._closed:
            raise DriverError(f"pull consumer {self.group} is closed")
        wait = self._subscribe_timeout if timeout is None else timeout
        route = self._client.get_route(topic, timeout=self._timeout)
        done: Future[None] = Future()
        self._call(lambda: self._do_subscribe(topic, on_message, route, done))
        try:
            done.result(wait)
        except FutureTimeout:
            self._call(lambda: self._drop_topic(topic))
            raise SubscribeTimeout(
                f"start offsets of {topic} for group {self.group} not known within {wait:g}s "
                f"(last error: {self.last_error or 'none'})"
            ) from None

    def unsubscribe(self, topic: str, *, timeout: float | None = None) -> None:
        """Stop delivering ``topic`` and commit its queues' offsets (waits up to ``timeout``).

        The consumer group stays on the broker with its offsets. Never raises for a failed
        commit (reported through ``on_error``); unknown topics are ignored.
        """
        if self._closed:
            return
        wait = self._timeout if timeout is None else timeout
        result: Future[_Unsubscribed] = Future()

        def run() -> None:
            result.set_result(self._do_unsubscribe(topic))

        self._call(run)
        try:
            done = result.result(wait)
        except FutureTimeout:
            self._report(BrokerUnavailable(f"unsubscribing {topic}: the pull loop is stuck"))
            return
        self._wait_commits(done.commits, time.monotonic() + wait)

    def close(self, timeout: float = 5.0) -> None:
        """Stop pulling, commit every queue's offset (bounded), and stop the threads.

        Returns within about ``timeout`` seconds (plus the time an ``on_message`` call in
        progress takes to return). Never raises.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._stop.set()
        self._route_wake.set()
        self._inbox.put((_EV_STOP,))
        if threading.current_thread() is not self._loop_thread:
            self._loop_thread.join(timeout)
        if self._owns_client:
            self._client.close()  # fails a route lookup in flight at once
        if threading.current_thread() is not self._route_thread:
            self._route_thread.join(1.0)

    def __enter__(self) -> PullConsumer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def assignment(self, topic: str, timeout: float = 5.0) -> list[tuple[str, int, int]]:
        """(broker name, queue id, next offset) of the queues of ``topic`` assigned here."""
        result: Future[list[tuple[str, int, int]]] = Future()

        def run() -> None:
            t = self._topics.get(topic)
            qs = sorted(t.queues.values(), key=lambda q: q.key) if t else []
            result.set_result([(q.broker_name, q.queue_id, q.offset) for q in qs])

        self._call(run)
        return result.result(timeout)

    # --- plumbing ------------------------------------------------------------------------

    def _call(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` on the loop thread (inline if already there)."""
        if threading.current_thread() is self._loop_thread:
            fn()
        else:
            self._inbox.put((_EV_CALL, fn))

    def _report(self, exc: BaseException) -> None:
        self.last_error = f"{type(exc).__name__}: {' '.join(str(exc).split())}"
        if self._on_error is None:
            log.debug("pull consumer %s: %s", self.group, self.last_error)
            return
        try:
            self._on_error(exc)
        except Exception as cb_exc:  # a reporting callback must not break the loop
            log.debug("pull consumer %s: on_error raised %r", self.group, cb_exc)

    def _want_routes(self) -> None:
        self._route_wake.set()

    # --- the loop thread -----------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._loop()
        except BaseException as exc:  # a bug: say so, never die silently
            log.exception("pull consumer %s: loop failed", self.group)
            self._report(exc)
        finally:
            try:
                self._wait_commits(self._commit_all(), time.monotonic() + self._timeout)
            except Exception as exc:
                self._report(exc)

    def _loop(self) -> None:
        inbox = self._inbox
        next_commit = time.monotonic() + self._commit_interval
        # Runs until a stop event; every wait is bounded by _TICK.
        while True:
            now = time.monotonic()
            wait = min(_TICK, next_commit - now)
            if self._timers:
                wait = min(wait, self._timers[0][0] - now)
            try:
                ev: tuple[Any, ...] | None = inbox.get(timeout=max(wait, 0.0))
            except queue.Empty:
                ev = None
            handled = 0
            while ev is not None:
                if ev[0] == _EV_STOP:
                    return
                self._dispatch(ev)
                handled += 1
                if handled >= _DRAIN:
                    break
                try:
                    ev = inbox.get_nowait()
                except queue.Empty:
                    ev = None
            if self._stop.is_set():
                return
            now = time.monotonic()
            self._fire_timers(now)
            if now >= next_commit:
                self._flush_commits()
                next_commit = now + self._commit_interval

    def _dispatch(self, ev: tuple[Any, ...]) -> None:
        kind = ev[0]
        try:
            if kind == _EV_PULL:
                self._on_pull(ev[1], ev[2], ev[3], ev[4])
            elif kind == _EV_INIT:
                self._on_init(ev[1], ev[2])
            elif kind == _EV_CALL:
                ev[1]()
            elif kind == _EV_ROUTES:
                self._on_routes(ev[1])
        except Exception as exc:  # never out of the loop
            self._stats.errors += 1
            self._report(exc)

    # timers

    def _schedule(self, q: _Queue, delay: float) -> None:
        tid = next(self._timer_ids)
        q.timer = tid
        heapq.heappush(self._timers, (time.monotonic() + delay, tid, q))

    def _fire_timers(self, now: float) -> None:
        timers = self._timers
        # Each pass pops one timer: bounded by the heap's size.
        while timers and timers[0][0] <= now:
            _due, tid, q = heapq.heappop(timers)
            if q.timer == tid:
                q.timer = 0
                self._kick(q)

    def _failed(self, q: _Queue, exc: BaseException) -> None:
        """Count and report a failed request of ``q``; retry it after a backoff."""
        self._stats.errors += 1
        self._report(exc)
        q.failures += 1
        delay = min(self._max_backoff, _BASE_BACKOFF * (2 ** min(q.failures - 1, 16)))
        self._schedule(q, delay)
        # The broker may be gone, restarted elsewhere, or no longer hold the topic.
        if isinstance(exc, RemotingError):
            if exc.code in (ResponseCode.TOPIC_NOT_EXIST, ResponseCode.SYSTEM_ERROR):
                self._want_routes()
        elif not isinstance(exc, ProtocolError):
            self._want_routes()

    # requests

    def _kick(self, q: _Queue) -> None:
        """Send the next request ``q`` needs, unless one is in flight or a retry is pending."""
        if not q.active or q.busy or q.timer:
            return
        if q.addr is None:  # its broker has no registered master: wait for the route
            self._want_routes()
            self._schedule(q, self._max_backoff)
            return
        if q.offset < 0:
            self._send_init(q)
        else:
            self._send_pull(q)

    def _send_pull(self, q: _Queue) -> None:
        commit = q.delivered
        flags = PULL_SUSPEND | PULL_SUBSCRIPTION | (PULL_COMMIT_OFFSET if commit >= 0 else 0)
        ext = q.ext.copy()
        ext["queueOffset"] = str(q.offset)
        ext["maxMsgNums"] = self._batch
        ext["sysFlag"] = str(flags)
        ext["commitOffset"] = str(max(commit, 0))
        ext["suspendTimeoutMillis"] = self._suspend_ms
        ext["subscription"] = "*"
        ext["subVersion"] = "0"
        ext["expressionType"] = "TAG"
        assert q.addr is not None
        try:
            conn = self._client.connection(q.addr)
            opaque = conn.next_opaque()
            frame = encode_command(RemotingCommand(RequestCode.PULL_MESSAGE, opaque, 0, None, ext))
            fut: Future[RemotingCommand] = conn.submit(
                opaque, frame, timeout=self._pull_timeout, what="PULL_MESSAGE"
            )
        except BenchError as exc:
            self._failed(q, exc)
            return
        q.busy = True
        if commit >= 0:
            q.commit_sent = commit
        inbox = self._inbox

        def done(f: Future[RemotingCommand]) -> None:
            # On a reader thread: hand over, with the arrival time, and nothing else.
            inbox.put((_EV_PULL, q, f, time.time_ns(), commit))

        fut.add_done_callback(done)

    def _on_pull(self, q: _Queue, fut: Future[RemotingCommand], recv_ns: int, commit: int) -> None:
        q.busy = False
        if not q.active:
            return
        exc = _exception(fut)
        if exc is not None:
            self._failed(q, exc)
            return
        resp = fut.result()
        code = resp.code
        stats = self._stats
        stats.pulls += 1
        if code not in _PULL_CODES:
            self._failed(
                q, RemotingError(q.addr or "?", RequestCode.PULL_MESSAGE, code, resp.remark)
            )
            return
        if commit >= 0:
            q.commit_acked = commit
        try:
            nxt = int(resp.ext_fields["nextBeginOffset"])
        except (KeyError, ValueError):
            self._failed(q, ProtocolError(f"pull answer without nextBeginOffset: {resp}"))
            return
        if code == ResponseCode.SUCCESS:
            try:
                messages = stored_message_bodies(resp.body)
            except ProtocolError as bad:
                self._failed(q, bad)
                return
            start = q.offset
            q.offset = nxt
            q.failures = 0
            q.retry_streak = 0
            stats.pulls_found += 1
            # The next pull goes out first, so the broker reads ahead while we deliver.
            self._kick(q)
            handler = q.topic.handler
            delivered = 0
            for offset, body in messages:
                if offset < start:
                    stats.skipped += 1
                    continue
                try:
                    handler(body, recv_ns)
                except Exception as raised:
                    stats.handler_errors += 1
                    self._report(raised)
                delivered += 1
            stats.messages += delivered
            q.delivered = nxt
            return
        q.failures = 0
        if code == ResponseCode.PULL_OFFSET_MOVED:
            stats.offset_moved += 1
            self._report(
                OffsetMoved(
                    f"{q.addr} moved {q.key[0]}/{q.broker_name}/{q.queue_id} of group "
                    f"{self.group} from offset {q.offset} to {nxt} ({resp.remark})"
                )
            )
        else:
            stats.pulls_empty += 1
        q.offset = q.delivered = nxt
        if code == ResponseCode.PULL_RETRY_IMMEDIATELY:
            q.retry_streak += 1
            if q.retry_streak >= _RETRY_STREAK:
                self._schedule(q, _RETRY_STREAK_DELAY)
                return
        else:
            q.retry_streak = 0
        self._kick(q)

    def _send_init(self, q: _Queue) -> None:
        if q.init_step == 0:
            code = RequestCode.QUERY_CONSUMER_OFFSET
            ext = {**q.ext, "setZeroIfNotFound": "false"}
        else:
            code = RequestCode.GET_MAX_OFFSET
            ext = {"topic": q.key[0], "queueId": str(q.queue_id), "bname": q.broker_name}
        assert q.addr is not None
        try:
            fut = self._client.connection(q.addr).request_async(code, ext, timeout=self._timeout)
        except BenchError as exc:
            self._failed(q, exc)
            return
        q.busy = True
        inbox = self._inbox
        fut.add_done_callback(lambda f: inbox.put((_EV_INIT, q, f)))

    def _on_init(self, q: _Queue, fut: Future[RemotingCommand]) -> None:
        q.busy = False
        if not q.active:
            return
        exc = _exception(fut)
        if exc is not None:
            self._failed(q, exc)
            return
        resp = fut.result()
        request = (
            RequestCode.QUERY_CONSUMER_OFFSET if q.init_step == 0 else RequestCode.GET_MAX_OFFSET
        )
        if q.init_step == 0 and resp.code == ResponseCode.QUERY_NOT_FOUND:
            q.init_step = 1  # a new group: start at the queue's end
            self._kick(q)
            return
        if resp.code != ResponseCode.SUCCESS:
            self._failed(q, RemotingError(q.addr or "?", request, resp.code, resp.remark))
            return
        try:
            offset = int(resp.ext_fields["offset"])
        except (KeyError, ValueError):
            self._failed(q, ProtocolError(f"offset answer without an offset: {resp}"))
            return
        if q.init_step == 0:
            q.commit_sent = q.commit_acked = offset
        q.offset = q.delivered = offset
        q.failures = 0
        self._kick(q)  # the first pull is on the wire before the subscriber is told
        self._check_ready(q.topic)

    # subscriptions and routes

    def _check_ready(self, t: _Topic) -> None:
        if t.waiters and all(q.offset >= 0 for q in t.queues.values()):
            waiters, t.waiters = t.waiters, []
            for w in waiters:
                if not w.done():
                    w.set_result(None)

    def _set_topic_names(self) -> None:
        with self._lock:
            self._topic_names = tuple(self._topics)

    def _do_subscribe(
        self, topic: str, handler: OnMessage, route: TopicRoute, done: Future[None]
    ) -> None:
        t = self._topics.get(topic)
        if t is None:
            t = self._topics[topic] = _Topic(topic, handler)
            self._set_topic_names()
            t.waiters.append(done)
            self._apply_route(t, route)
        else:
            t.handler = handler
            t.waiters.append(done)
        self._check_ready(t)

    def _do_unsubscribe(self, topic: str) -> _Unsubscribed:
        t = self._topics.pop(topic, None)
        if t is None:
            return _Unsubscribed([])
        self._set_topic_names()
        queues = list(t.queues.values())
        for q in queues:
            q.active = False
            q.timer = 0
        for w in t.waiters:
            w.cancel()
        return _Unsubscribed(self._commit_requests(queues))

    def _drop_topic(self, topic: str) -> None:
        self._do_unsubscribe(topic)

    def _apply_route(self, t: _Topic, route: TopicRoute) -> None:
        masters = {b.broker_name: b.master_addr for b in route.brokers}
        mine = allocate_averagely(readable_queues(route), self.consumer_index, self.consumer_count)
        keep = set(mine)
        for key in [k for k in t.queues if k not in keep]:
            gone = t.queues.pop(key)
            gone.active = False
            gone.timer = 0
            if gone.delivered >= 0:
                self._parked[gone.key] = gone.delivered
            self._commit_oneway(gone)
        for broker_name, queue_id in mine:
            addr = masters.get(broker_name)
            q = t.queues.get((broker_name, queue_id))
            if q is None:
                q = t.queues[(broker_name, queue_id)] = _Queue(t, broker_name, queue_id, self.group)
                q.addr = addr
                parked = self._parked.pop(q.key, None)
                if parked is not None and self.consumer_count == 1:
                    # Nobody else consumes this queue: our own offset is the latest.
                    q.offset = q.delivered = parked
                self._kick(q)
            elif addr != q.addr:
                q.addr = addr
                if addr is not None and q.timer and not q.busy:
                    q.timer = 0  # it was waiting for this address
                    self._kick(q)

    def _on_routes(self, routes: dict[str, TopicRoute | None]) -> None:
        self._stats.route_lookups += 1
        for name, route in routes.items():
            t = self._topics.get(name)
            # No route (the topic's only broker is down, so the name server dropped it): keep
            # the assignment and addresses; the broker may come back where it was.
            if t is not None and route is not None:
                self._apply_route(t, route)
                self._check_ready(t)

    # commits

    def _update_ext(self, q: _Queue, offset: int) -> dict[str, str]:
        return {**q.ext, "commitOffset": str(offset)}

    def _commit_oneway(self, q: _Queue) -> None:
        if q.delivered < 0 or q.delivered == q.commit_sent or q.addr is None:
            return
        try:
            self._client.connection(q.addr).oneway(
                RequestCode.UPDATE_CONSUMER_OFFSET, self._update_ext(q, q.delivered)
            )
        except BenchError as exc:
            self._stats.errors += 1
            self._report(exc)
            return
        self._stats.commits += 1
        q.commit_sent = q.delivered

    def _flush_commits(self) -> None:
        """Commit offsets that no pull carried yet (a queue backing off, or idle after a
        batch whose next pull went out before the batch was delivered)."""
        for t in self._topics.values():
            for q in t.queues.values():
                if q.delivered > q.commit_sent:
                    self._commit_oneway(q)

    def _commit_requests(
        self, queues: list[_Queue]
    ) -> list[tuple[_Queue, int, Future[RemotingCommand]]]:
        out: list[tuple[_Queue, int, Future[RemotingCommand]]] = []
        for q in queues:
            if q.delivered < 0 or q.delivered == q.commit_acked or q.addr is None:
                continue
            try:
                fut = self._client.connection(q.addr).request_async(
                    RequestCode.UPDATE_CONSUMER_OFFSET,
                    self._update_ext(q, q.delivered),
                    timeout=self._timeout,
                )
            except BenchError as exc:
                self._stats.errors += 1
                self._report(exc)
                continue
            self._stats.commits += 1
            out.append((q, q.delivered, fut))
        return out

    def _commit_all(self) -> list[tuple[_Queue, int, Future[RemotingCommand]]]:
        queues = [q for t in self._topics.values() for q in t.queues.values()]
        for q in queues:
            q.active = False
        return self._commit_requests(queues)

    def _wait_commits(
        self, commits: list[tuple[_Queue, int, Future[RemotingCommand]]], deadline: float
    ) -> None:
        for q, offset, fut in commits:
            try:
                resp = fut.result(max(deadline - time.monotonic(), 0.0) + 0.1)
            except FutureTimeout:
                self._stats.errors += 1
                self._report(BrokerUnavailable(f"{q.addr} did not confirm an offset commit"))
                continue
            except Exception as exc:
                self._stats.errors += 1
                self._report(exc)
                continue
            if resp.code == ResponseCode.SUCCESS:
                q.commit_acked = offset
            elif resp.code != ResponseCode.SUBSCRIPTION_GROUP_NOT_EXIST:
                # (A group none of whose pulls reached the broker yet does not exist there;
                # those pulls, if they arrive, commit the same offset.)
                self._stats.errors += 1
                self._report(
                    RemotingError(
                        q.addr or "?", RequestCode.UPDATE_CONSUMER_OFFSET, resp.code, resp.remark
                    )
                )

    # --- the route thread ----------------------------------------------------------------

    def _route_loop(self) -> None:
        last = 0.0
        # Runs until close; every wait is bounded by route_refresh_s.
        while not self._stop.is_set():
            self._route_wake.wait(self._route_refresh)
            if self._stop.is_set():
                return
            self._route_wake.clear()
            gap = last + _MIN_ROUTE_INTERVAL - time.monotonic()
            if gap > 0 and self._stop.wait(gap):
                return
            last = time.monotonic()
            names = self._topic_names
            if not names:
                continue
            try:
                routes = self._client.get_routes(names, timeout=self._timeout)
            except Exception as exc:
                if self._stop.is_set():
                    return
                self._stats.errors += 1
                self._report(exc)
                continue
            self._inbox.put((_EV_ROUTES, routes))


_PULL_CODES: Final = frozenset(
    {
        ResponseCode.SUCCESS,
        ResponseCode.PULL_NOT_FOUND,
        ResponseCode.PULL_RETRY_IMMEDIATELY,
        ResponseCode.PULL_OFFSET_MOVED,
    }
)


def _exception(fut: Future[Any]) -> BaseException | None:
    if fut.cancelled():
        return BrokerUnavailable("request cancelled")
    return fut.exception()
