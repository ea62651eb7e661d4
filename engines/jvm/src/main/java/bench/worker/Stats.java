package bench.worker;

import com.fasterxml.jackson.databind.node.JsonNodeFactory;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.nio.ByteBuffer;
import java.util.Base64;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.LongAdder;
import java.util.concurrent.locks.Lock;
import java.util.concurrent.locks.StampedLock;
import org.HdrHistogram.Histogram;
import org.HdrHistogram.Recorder;

/**
 * One worker's counters, errors and latency histograms between two intervals. Lock-free on the
 * hot path: LongAdders and HdrHistogram Recorders (wait-free for writers); callers keep the
 * references of their hot counters and histograms.
 */
final class Stats {
    static final long LOWEST_US = 1, HIGHEST_US = 3_600_000_000L;
    static final int DIGITS = 3;

    /** One histogram (values in us) and its count of clamped values. */
    static final class Hist {
        final String name;
        final Recorder recorder = new Recorder(LOWEST_US, HIGHEST_US, DIGITS);
        final LongAdder clamped;

        Hist(String name, LongAdder clamped) {
            this.name = name;
            this.clamped = clamped;
        }

        void recordUs(long us) {
            if (us < LOWEST_US) {
                recorder.recordValue(LOWEST_US);
                clamped.increment();
            } else if (us > HIGHEST_US) {
                recorder.recordValue(HIGHEST_US);
                clamped.increment();
            } else {
                recorder.recordValue(us);
            }
        }

        /** Records a monotonic-ns span as microseconds. */
        void recordSpanNs(long ns) { recordUs(Math.floorDiv(ns, 1000L)); }
    }

    private final String workerId;
    private final ConcurrentHashMap<String, LongAdder> counters = new ConcurrentHashMap<>();
    private final ConcurrentHashMap<String, LongAdder> errors = new ConcurrentHashMap<>();
    private final ConcurrentHashMap<String, Hist> hists = new ConcurrentHashMap<>();
    private long startNs;

    Stats(String workerId, long startNs) {
        this.workerId = workerId;
        this.startNs = startNs;
    }

    LongAdder counter(String name) { return counters.computeIfAbsent(name, k -> new LongAdder()); }

    void count(String name, long n) { counter(name).add(n); }

    void error(String operation, String kind) { errors.computeIfAbsent(operation + "." + kind, k -> new LongAdder()).increment(); }

    Hist hist(String name) { return hists.computeIfAbsent(name, k -> new Hist(k, counter("clamped." + k))); }

    /**
     * Held shared by a writer of figures that belong in one interval together (an ack's counter
     * and its two latencies; a receipt's counter and its end-to-end latency), exclusively by the
     * cut: every histogram and counter is then cut at the same instant, so an interval never
     * holds an ack's latency without its count (on a loaded machine one cut after the other
     * split 64 of 3,492 acks). A StampedLock: its shared side is one CAS, where a
     * ReentrantReadWriteLock also keeps a per-thread hold count on every acquisition (no
     * holder here takes it twice).
     */
    private final StampedLock cut = new StampedLock();
    private final Lock shared = cut.asReadLock();
    private final Lock exclusive = cut.asWriteLock();

    Lock together() { return shared; }

    /** The interval since the last call, as the protocol's interval object (ledger left null). */
    synchronized ObjectNode snapshot(long nowNs) {
        ObjectNode o = JsonNodeFactory.instance.objectNode();
        o.put("worker_id", workerId);
        o.put("start_ns", startNs);
        o.put("end_ns", nowNs);
        startNs = nowNs;
        Map<String, Histogram> taken = new TreeMap<>();
        ObjectNode counted, failed;
        exclusive.lock();
        try {
            for (Hist h : hists.values()) taken.put(h.name, h.recorder.getIntervalHistogram());
            counted = drain(counters);
            failed = drain(errors);
        } finally {
            exclusive.unlock();
        }
        ObjectNode hs = JsonNodeFactory.instance.objectNode();
        for (Map.Entry<String, Histogram> e : taken.entrySet()) {
            if (e.getValue().getTotalCount() > 0) hs.put(e.getKey(), encode(e.getValue()));
        }
        o.set("counters", counted);
        o.set("errors", failed);
        o.set("histograms", hs);
        o.putNull("ledger");
        return o;
    }

    private static ObjectNode drain(Map<String, LongAdder> from) {
        ObjectNode o = JsonNodeFactory.instance.objectNode();
        for (Map.Entry<String, LongAdder> e : new TreeMap<>(from).entrySet()) {
            long v = e.getValue().sumThenReset();
            if (v != 0) o.put(e.getKey(), v);
        }
        return o;
    }

    /** The compressed V2 encoding in base64 (what Python's hdrh decodes). */
    static String encode(Histogram h) {
        ByteBuffer buf = ByteBuffer.allocate(h.getNeededByteBufferCapacity());
        int len = h.encodeIntoCompressedByteBuffer(buf);
        byte[] bytes = new byte[len];
        buf.flip();
        buf.get(bytes, 0, len);
        return Base64.getEncoder().encodeToString(bytes);
    }
}
