package bench.worker;

import com.fasterxml.jackson.databind.node.ObjectNode;

/**
 * One drain: over when nothing is missing, at its timeout, or once the count of missing
 * messages has not fallen for stall_s (null: never early). Mirrors the Python worker's _Drain.
 */
final class Drain {
    private final long started, timeoutNs, stallNs;
    private long progressAt, fewest = -1;

    Drain(long nowNs, double timeoutS, Double stallS) {
        started = nowNs;
        progressAt = nowNs;
        timeoutNs = (long) (timeoutS * 1e9);
        stallNs = stallS == null ? -1 : (long) (stallS * 1e9);
    }

    /** missing is -1 while sends are still in flight. The drained event once it is over, else null. */
    ObjectNode check(long now, long missing) {
        if (missing < 0 || fewest < 0 || missing < fewest) {
            progressAt = now;  // acks still coming in, or messages arriving
            fewest = missing;
        }
        boolean stalled = stallNs >= 0 && now - progressAt >= stallNs;
        if (missing == 0 || now >= started + timeoutNs || stalled) {
            ObjectNode e = Protocol.event("drained");
            e.put("ok", missing == 0);
            e.put("undelivered", missing);
            e.put("seconds", (now - started) / 1e9);
            e.put("stalled", stalled && missing != 0);
            return e;
        }
        return null;
    }
}
