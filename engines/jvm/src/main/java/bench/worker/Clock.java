package bench.worker;

import java.time.Instant;

/** Wall-clock nanoseconds without an allocation per reading: an offset onto System.nanoTime(). */
final class Clock {
    private static volatile long offset = measure();

    private Clock() {}

    private static long measure() {
        Instant now = Instant.now();
        long mono = System.nanoTime();
        return now.getEpochSecond() * 1_000_000_000L + now.getNano() - mono;
    }

    /** Re-reads the wall clock (called once per stats interval, so NTP steps are followed). */
    static void recalibrate() { offset = measure(); }

    static long wallNs() { return offset + System.nanoTime(); }

    /** The wall-clock ns of a System.nanoTime() reading taken since the last recalibration. */
    static long wallOf(long monoNs) { return offset + monoNs; }

    static long monoNs() { return System.nanoTime(); }
}
