package bench.worker;

import java.math.BigDecimal;
import java.math.BigInteger;

/**
 * An open-loop schedule: send k is intended at start + k / rate, exactly (the rate is the exact
 * rational value of its double, as Python's Fraction(rate) is), so intended times never drift.
 */
final class RateSchedule {
    private static final BigInteger NS = BigInteger.valueOf(1_000_000_000L);
    final long startNs;
    private final BigInteger num, scaledDen; // rate = num / den; scaledDen = 1e9 * den
    private final long numL, scaledDenL;       // the same when they fit in a long, else -1

    RateSchedule(double ratePerS, long startNs) {
        if (!(Double.isFinite(ratePerS) && ratePerS > 0)) throw new IllegalArgumentException("rate must be positive");
        BigDecimal exact = new BigDecimal(ratePerS);
        BigInteger n = exact.unscaledValue(), d = BigInteger.ONE;
        if (exact.scale() > 0) d = BigInteger.TEN.pow(exact.scale());
        else n = n.multiply(BigInteger.TEN.pow(-exact.scale()));
        BigInteger g = n.gcd(d);
        num = n.divide(g);
        scaledDen = d.divide(g).multiply(NS);
        numL = num.bitLength() < 63 ? num.longValue() : -1;
        scaledDenL = scaledDen.bitLength() < 63 ? scaledDen.longValue() : -1;
        this.startNs = startNs;
    }

    /** The intended (monotonic) time of send k of this schedule. */
    long intendedNs(long k) {
        if (numL > 0 && scaledDenL > 0 && Math.multiplyHigh(k, scaledDenL) == 0) {
            long prod = k * scaledDenL;
            if (prod >= 0) return startNs + prod / numL;
        }
        return startNs + BigInteger.valueOf(k).multiply(scaledDen).divide(num).longValueExact();
    }

    /** How many sends are intended before deadlineNs: the count of k with intendedNs(k) < deadline. */
    long planned(long deadlineNs) {
        long span = deadlineNs - startNs;
        if (span <= 0) return 0;
        BigInteger[] qr = BigInteger.valueOf(span).multiply(num).divideAndRemainder(scaledDen);
        BigInteger n = qr[1].signum() > 0 ? qr[0].add(BigInteger.ONE) : qr[0];
        return n.bitLength() < 63 ? n.longValue() : Long.MAX_VALUE;
    }
}
