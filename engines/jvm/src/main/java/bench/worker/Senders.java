package bench.worker;

import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.ArrayBlockingQueue;
import java.util.concurrent.ThreadPoolExecutor;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.LongAdder;
import java.util.concurrent.locks.Lock;
import java.util.concurrent.locks.LockSupport;

/**
 * The producing side: slots dealt round-robin to sender threads, each running an open loop
 * (exact intended-time schedule) or a closed loop (max_in_flight window / one sync send at a
 * time), switching when set_rate installs a new plan.
 */
final class Senders {
    /** The offered rate from startNs on (rate null: closed loop). */
    record Plan(Double rate, long startNs) {}

    private static final long ERROR_PAUSE_NS = 10_000_000L, RECREATE_NS = 1_000_000_000L, WAIT_STEP_NS = 50_000_000L;
    /** An open loop waits at least this long when it waits, then sends every message whose
     *  intended time has passed (never one before it): a wake-up per message cost more CPU than
     *  the send (on this 2-core VM a thread's sleep and wake-up is tens of microseconds of
     *  kernel time, and each send from a woken sender wakes the client's I/O thread too), as the
     *  native tools avoid the same way (Thread.sleep waits at least a millisecond). The latency
     *  from the intended time includes up to this much of the wait; the latency from the send
     *  does not. */
    static final long PACE_NS = 1_000_000L;

    private final Worker w;
    private final LoadSpec spec;
    final List<Slot> slots = new ArrayList<>();
    final Window window;
    private final List<Thread> threads = new ArrayList<>();
    private final boolean async, oneway, sync, perBatch, shared;
    volatile boolean stop;
    volatile long deadlineNs = Long.MAX_VALUE;
    volatile Plan plan;
    private volatile int consecutiveErrors;
    private final LongAdder sent, acked, sendErrors, unsent;
    private final Stats.Hist publish, publishIntended, connect;
    /** Closes per-batch clients off the sender's path: a Java client's close (its event loop,
     *  timers, executors) took about a second, which serialised the sender (Pulsar async,
     *  a new client per 100 sends: 89 msg/s). Bounded: past 16 waiting, the sender closes
     *  its own (CallerRuns), so closes never pile up without limit. */
    private final ThreadPoolExecutor closer = new ThreadPoolExecutor(2, 2, 10, TimeUnit.SECONDS,
            new ArrayBlockingQueue<>(16), r -> {
                Thread t = new Thread(r, "closer");
                t.setDaemon(true);
                return t;
            }, new ThreadPoolExecutor.CallerRunsPolicy());

    Senders(Worker w) {
        this.w = w;
        this.spec = w.spec;
        window = new Window(spec.maxInFlight);
        async = spec.sendMode.equals("async");
        oneway = spec.sendMode.equals("oneway");
        sync = spec.sendMode.equals("sync");
        perBatch = spec.connectionMode.equals("per_batch");
        shared = spec.connectionMode.equals("shared");
        sent = w.stats.counter("sent");
        acked = w.stats.counter("acked");
        sendErrors = w.stats.counter("send_errors");
        unsent = w.stats.counter("unsent");
        publish = w.stats.hist("publish");
        publishIntended = w.stats.hist("publish_intended");
        connect = w.stats.hist("connect");
    }

    /** (Re)creates the slot's producer, and its own client unless clients are shared. */
    Throwable open(Slot slot) {
        long started = System.nanoTime();
        try {
            Engine.Client client = w.shared;
            if (!shared) {
                client = w.engine.newClient();
                slot.client = client;
            }
            slot.producer = w.engine.producer(slot.topic, client);
        } catch (Throwable e) {
            w.countError("connect", e);
            closeProducer(slot);
            slot.nextRecreateNs = System.nanoTime() + RECREATE_NS;
            return e;
        }
        slot.onClient = 0;
        connect.recordSpanNs(System.nanoTime() - started);
        return null;
    }

    void closeProducer(Slot slot) { detach(slot).run(); }

    /** Takes the slot's producer (and own client) from it; the returned task closes them. */
    private static Runnable detach(Slot slot) {
        Engine.Producer p = slot.producer;
        Engine.Client c = slot.client;
        slot.producer = null;
        slot.client = null;
        return () -> {
            if (p != null) p.close();
            if (c != null) c.close();
        };
    }

    void start() {
        if (slots.isEmpty()) return;
        // An async open loop's load is its rate and window, not its thread count: one thread
        // sends what is due with a wake-up per PACE_NS, where each further thread adds its own.
        int n = Math.min(async && spec.ratePerS != null ? 1 : spec.senderThreads, slots.size());
        for (int i = 0; i < n; i++) {
            List<Slot> mine = new ArrayList<>();
            for (int k = i; k < slots.size(); k += n) mine.add(slots.get(k));
            long quota = -1;
            if (spec.maxMessages != null) quota = spec.maxMessages / n + (i < spec.maxMessages % n ? 1 : 0);
            final long q = quota;
            Thread t = new Thread(() -> run(mine, n, q), "sender-" + i);
            t.setDaemon(true);
            threads.add(t);
            t.start();
        }
    }

    boolean alive() {
        for (Thread t : threads) if (t.isAlive()) return true;
        return false;
    }

    long sentTotal() {
        long s = 0;
        for (Slot slot : slots) s += slot.sentTotal;
        return s;
    }

    private void run(List<Slot> mine, int n, long left) {
        try {
            int[] cursor = {0};
            while (!stop && left != 0 && System.nanoTime() < deadlineNs) {
                Plan p = plan;
                left = p.rate() == null ? closedLoop(mine, cursor, p, left) : openLoop(mine, cursor, p, n, left);
            }
        } catch (Throwable e) {
            w.protocol.failed("sender: " + Protocol.describe(e), Protocol.trace(e));
            w.stopping = true;
        }
    }

    private Slot next(List<Slot> mine, int[] cursor) {
        Slot s = mine.get(cursor[0]);
        cursor[0] = (cursor[0] + 1) % mine.size();
        return s;
    }

    private long openLoop(List<Slot> mine, int[] cursor, Plan p, int n, long left) throws InterruptedException {
        RateSchedule schedule = new RateSchedule(p.rate() / n, p.startNs());
        long planned = schedule.planned(deadlineNs);
        if (left >= 0) planned = Math.min(planned, left);
        long k = 0;
        while (k < planned) {
            if (stop || plan != p) return left;
            long intended = schedule.intendedNs(k);
            long now;
            while ((now = System.nanoTime()) < intended) {
                if (stop || plan != p) return left;
                LockSupport.parkNanos(Math.min(Math.max(intended - now, PACE_NS), WAIT_STEP_NS));
            }
            if (now >= deadlineNs) break;
            if (async && acquire(1) == 0) break;
            send(next(mine, cursor), intended);
            k++;
            if (left > 0) left--;
        }
        if (!stop && plan == p && planned > k) unsent.add(planned - k);
        // Every planned send went out: the next one would be past the deadline (or over the
        // quota), so wait here for the deadline, a stop or a new plan.
        while (left != 0 && !stop && plan == p && System.nanoTime() < deadlineNs) {
            LockSupport.parkNanos(WAIT_STEP_NS);
        }
        return left;
    }

    private long closedLoop(List<Slot> mine, int[] cursor, Plan p, long left) throws InterruptedException {
        while (!stop && plan == p && left != 0 && System.nanoTime() < deadlineNs) {
            int burst = 1;
            if (async) {
                int want = left < 0 ? window.size : (int) Math.min(left, window.size);
                burst = acquire(want);
                if (burst == 0) return 0;
            }
            for (int i = 0; i < burst; i++) send(next(mine, cursor), Long.MIN_VALUE);
            if (left > 0) left -= burst;
            if (consecutiveErrors > 0) TimeUnit.NANOSECONDS.sleep(ERROR_PAUSE_NS);
        }
        return left;
    }

    /** Up to want window slots, waiting while the broker is slow; 0 once stopped or past the deadline. */
    private int acquire(int want) throws InterruptedException {
        while (!stop) {
            if (System.nanoTime() >= deadlineNs) return 0;
            int granted = window.acquire(want, 100_000_000L);
            if (granted > 0) return granted;
        }
        return 0;
    }

    private void send(Slot slot, long intendedNs) {
        if (perBatch && slot.onClient >= spec.batchSize) {
            slot.awaitIdle(w.sendTimeoutNs());   // the batch is acknowledged before its client goes
            closer.execute(detach(slot));
        }
        if (slot.producer == null && System.nanoTime() >= slot.nextRecreateNs) open(slot);
        Engine.Producer producer = slot.producer;
        long seq = slot.seq++;
        slot.sentTotal = slot.seq;
        long sendMono = System.nanoTime();
        long sendNs = Clock.wallOf(sendMono);
        byte[] payload = slot.payload.encode(seq, sendNs);
        slot.ledger.recordSent(seq);
        sent.increment();
        if (producer == null) {
            // No producer (re-creating it failed): the send fails as a connection error, counted
            // as the Python worker does (its drivers classify that error as broker_error).
            failed(slot, seq, null, "connect");
            if (async) window.release(1);
            return;
        }
        slot.onClient++;
        if (oneway) {
            try {
                producer.sendOneway(payload);
                noErrors();
            } catch (Throwable e) {
                failed(slot, seq, e, "send");
            }
            return;
        }
        if (sync) {
            try {
                producer.send(payload);
                acked(slot, seq, sendMono, intendedNs);
            } catch (Throwable e) {
                failed(slot, seq, e, "send");
            }
            return;
        }
        if (perBatch) slot.inFlight.incrementAndGet();
        producer.sendAsync(payload, error -> {
            try {
                if (error == null) acked(slot, seq, sendMono, intendedNs);
                else failed(slot, seq, error, "send");
            } finally {
                window.release(1);
                if (perBatch) slot.inFlight.decrementAndGet();
            }
        });
    }

    private void acked(Slot slot, long seq, long sendMono, long intendedNs) {
        long now = System.nanoTime();
        noErrors();
        slot.ledger.recordAcked(seq);
        Lock together = w.stats.together();
        together.lock();
        try {
            acked.increment();
            publish.recordSpanNs(now - sendMono);
            if (intendedNs != Long.MIN_VALUE) publishIntended.recordSpanNs(now - intendedNs);
        } finally {
            together.unlock();
        }
    }

    /** Ends a run of errors. Written only when there was one: a volatile store on every ack
     *  (from the client's thread) would pull the cache line the senders read from under them. */
    private void noErrors() {
        if (consecutiveErrors != 0) consecutiveErrors = 0;
    }

    private void failed(Slot slot, long seq, Throwable e, String op) {
        consecutiveErrors++;
        slot.ledger.recordFailed(seq);
        sendErrors.increment();
        if (e == null) w.stats.error(op, "broker_error");
        else w.countError(op, e);
    }

    /** Stops sending; waits for the sender threads and for outstanding async sends. */
    void stopAll(long timeoutNs) throws InterruptedException {
        stop = true;
        long deadline = System.nanoTime() + timeoutNs;
        for (Thread t : threads) t.join(Math.max(1, (deadline - System.nanoTime()) / 1_000_000));
        window.awaitIdle(Math.max(0, deadline - System.nanoTime()));
        closer.shutdown();  // the clients of finished batches: closed before the worker reports
        closer.awaitTermination(Math.max(0, deadline - System.nanoTime()), TimeUnit.NANOSECONDS);
    }
}
