package bench.worker;

import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.JsonNodeFactory;
import java.util.Random;
import java.util.TreeSet;

/**
 * Broker-free checks the Python tests run against the built worker:
 * {@code schedule RATE START DEADLINE K...} prints the planned count and intended times (compared
 * with bench.runner.rate.OpenLoopSchedule); {@code intervalset SEED TRIALS} checks IntervalSet
 * against a TreeSet and prints "ok".
 */
public final class SelfCheck {
    private SelfCheck() {}

    public static void main(String[] args) {
        if (args.length > 0 && args[0].equals("schedule")) {
            RateSchedule s = new RateSchedule(Double.parseDouble(args[1]), Long.parseLong(args[2]));
            StringBuilder out = new StringBuilder(Long.toString(s.planned(Long.parseLong(args[3]))));
            for (int i = 4; i < args.length; i++) out.append(' ').append(s.intendedNs(Long.parseLong(args[i])));
            System.out.println(out);
        } else if (args.length > 0 && args[0].equals("intervalset")) {
            intervalSet(new Random(Long.parseLong(args[1])), Integer.parseInt(args[2]));
            System.out.println("ok");
        } else {
            System.err.println("usage: SelfCheck schedule RATE START DEADLINE K... | intervalset SEED TRIALS");
            System.exit(2);
        }
    }

    private static void intervalSet(Random r, int trials) {
        for (int t = 0; t < trials; t++) {
            IntervalSet s = new IntervalSet();
            TreeSet<Long> ref = new TreeSet<>();
            for (int i = r.nextInt(300); i > 0; i--) {
                long v = r.nextInt(400);
                if (r.nextInt(4) == 0) {
                    long b = v + r.nextInt(20), before = ref.size();
                    for (long x = v; x <= b; x++) ref.add(x);
                    check(s.addRange(v, b) == ref.size() - before, "addRange count");
                } else {
                    check(s.add(v) == ref.add(v), "add");
                }
                check(s.size() == ref.size(), "size");
            }
            for (long x = -2; x < 430; x++) check(s.contains(x) == ref.contains(x), "contains " + x);
            IntervalSet o = new IntervalSet();
            TreeSet<Long> other = new TreeSet<>();
            for (int i = 0; i < 100; i++) {
                long v = r.nextInt(400);
                o.add(v);
                other.add(v);
            }
            check(s.intersectionSize(o) == ref.stream().filter(other::contains).count(), "intersection");
            ArrayNode ranges = JsonNodeFactory.instance.arrayNode();
            s.writeTo(ranges);
            long prevEnd = Long.MIN_VALUE / 2;
            for (var range : ranges) {
                long a = range.get(0).asLong(), b = range.get(1).asLong();
                check(a <= b && a > prevEnd + 1, "ranges not sorted, disjoint and non-adjacent: " + ranges);
                prevEnd = b;
            }
        }
    }

    private static void check(boolean ok, String what) {
        if (!ok) throw new AssertionError(what);
    }
}
