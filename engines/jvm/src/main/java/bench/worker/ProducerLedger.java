package bench.worker;

import com.fasterxml.jackson.databind.node.JsonNodeFactory;
import com.fasterxml.jackson.databind.node.ObjectNode;

/** What one producer sent, had acknowledged and saw fail. Thread-safe (acks come on client threads). */
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

    synchronized void recordSent(long seq) { sent.add(seq); }

    synchronized void recordAcked(long seq) { acked.add(seq); }

    synchronized void recordFailed(long seq) { failed.add(seq); }

    /** A copy of the sent (oneway) or acknowledged set, for the drain's reconciliation. */
    synchronized IntervalSet expected(boolean oneway) { return (oneway ? sent : acked).copy(); }

    synchronized ObjectNode toJson() {
        ObjectNode o = JsonNodeFactory.instance.objectNode();
        o.put("producer_id", producerId);
        o.put("topic", topic);
        sent.writeTo(o.putArray("sent"));
        acked.writeTo(o.putArray("acked"));
        failed.writeTo(o.putArray("failed"));
        return o;
    }
}
