package bench.worker;

import com.fasterxml.jackson.databind.node.ArrayNode;
import java.util.Arrays;

/**
 * A set of longs as sorted, disjoint, non-adjacent closed ranges [a, b] (the ledger's unit).
 * Adding the next number after the last range is O(1); other inserts shift the arrays from the
 * insertion point (cheap near the end, where out-of-order acks land). Not thread-safe: the
 * ledgers that own sets lock around them.
 */
final class IntervalSet {
    private long[] starts = new long[4];
    private long[] ends = new long[4];
    private int n;
    private long count;

    long size() { return count; }

    int ranges() { return n; }

    /** Adds v; true if it was not in the set. */
    boolean add(long v) {
        if (n > 0) {
            long last = ends[n - 1];
            if (v == last + 1) {
                ends[n - 1] = v;
                count++;
                return true;
            }
            if (v > last + 1) {
                append(v, v);
                count++;
                return true;
            }
        } else {
            append(v, v);
            count++;
            return true;
        }
        return addRange(v, v) == 1;
    }

    /** Adds [a, b]; returns how many of its numbers were new. */
    long addRange(long a, long b) {
        int i = firstEndAtLeast(a - 1);
        int j = firstStartAbove(b + 1);
        long covered = 0;
        for (int k = i; k < j; k++) {
            covered += Math.max(0, Math.min(ends[k], b) - Math.max(starts[k], a) + 1);
        }
        long added = (b - a + 1) - covered;
        if (i < j) {
            a = Math.min(a, starts[i]);
            b = Math.max(b, ends[j - 1]);
        }
        replace(i, j, a, b);
        count += added;
        return added;
    }

    boolean contains(long v) {
        int i = firstEndAtLeast(v);
        return i < n && starts[i] <= v;
    }

    /** How many numbers of this set are also in other. */
    long intersectionSize(IntervalSet other) {
        long total = 0;
        int i = 0, j = 0;
        while (i < n && j < other.n) {
            long a = Math.max(starts[i], other.starts[j]);
            long b = Math.min(ends[i], other.ends[j]);
            if (a <= b) total += b - a + 1;
            if (ends[i] < other.ends[j]) i++; else j++;
        }
        return total;
    }

    IntervalSet copy() {
        IntervalSet c = new IntervalSet();
        c.starts = Arrays.copyOf(starts, Math.max(4, n));
        c.ends = Arrays.copyOf(ends, Math.max(4, n));
        c.n = n;
        c.count = count;
        return c;
    }

    void writeTo(ArrayNode out) {
        for (int k = 0; k < n; k++) out.addArray().add(starts[k]).add(ends[k]);
    }

    private void append(long a, long b) {
        if (n == starts.length) grow(n + 1);
        starts[n] = a;
        ends[n] = b;
        n++;
    }

    /** Replaces ranges [i, j) by the single range [a, b]. */
    private void replace(int i, int j, long a, long b) {
        int removed = j - i;
        if (removed == 0) {
            if (n == starts.length) grow(n + 1);
            System.arraycopy(starts, i, starts, i + 1, n - i);
            System.arraycopy(ends, i, ends, i + 1, n - i);
            n++;
        } else if (removed > 1) {
            System.arraycopy(starts, j, starts, i + 1, n - j);
            System.arraycopy(ends, j, ends, i + 1, n - j);
            n -= removed - 1;
        }
        starts[i] = a;
        ends[i] = b;
    }

    private void grow(int need) {
        int size = Math.max(need, starts.length * 2);
        starts = Arrays.copyOf(starts, size);
        ends = Arrays.copyOf(ends, size);
    }

    private int firstEndAtLeast(long v) {
        int lo = 0, hi = n;
        while (lo < hi) {
            int mid = (lo + hi) >>> 1;
            if (ends[mid] < v) lo = mid + 1; else hi = mid;
        }
        return lo;
    }

    private int firstStartAbove(long v) {
        int lo = 0, hi = n;
        while (lo < hi) {
            int mid = (lo + hi) >>> 1;
            if (starts[mid] <= v) lo = mid + 1; else hi = mid;
        }
        return lo;
    }
}
