package bench.worker;

import com.fasterxml.jackson.databind.node.JsonNodeFactory;
import com.fasterxml.jackson.databind.node.ObjectNode;

/**
 * What one producer sent, had acknowledged and saw fail. Thread-safe: each set has its own
 * lock, since the sender thread adds to "sent" while the client's I/O thread adds to "acked"
 * for every message; one lock for both made every send and every ack contend for it. Readers
 * take the locks in the order sent, acked, failed.
 */
final class ProducerLedger {
    final String producerId;
    final String topic;
    private final IntervalSet sent = new IntervalSet();
    private final IntervalSet acked = new IntervalSet();
    private final IntervalSet failed = new IntervalSet();

    ProducerLedger(String producerId, String topic) {
        this.producerId = producerId;
        this.topic = topic;
    }

    void recordSent(long seq) {
        synchronized (sent) {
            sent.add(seq);
        }
    }

    void recordAcked(long seq) {
        synchronized (acked) {
            acked.add(seq);
        }
    }

    void recordFailed(long seq) {
        synchronized (failed) {
            failed.add(seq);
        }
    }

    /** A copy of the sent (oneway) or acknowledged set, for the drain's reconciliation. */
    IntervalSet expected(boolean oneway) {
        IntervalSet set = oneway ? sent : acked;
        synchronized (set) {
            return set.copy();
        }
    }

    ObjectNode toJson() {
        ObjectNode o = JsonNodeFactory.instance.objectNode();
        o.put("producer_id", producerId);
        o.put("topic", topic);
        // One snapshot: no send is acknowledged or failed while the three are copied.
        synchronized (sent) {
            synchronized (acked) {
                synchronized (failed) {
                    sent.writeTo(o.putArray("sent"));
                    acked.writeTo(o.putArray("acked"));
                    failed.writeTo(o.putArray("failed"));
                }
            }
        }
        return o;
    }
}
