package bench.worker;

import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.JsonNodeFactory;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.util.ArrayList;
import java.util.List;

/** Every ledger of the worker; snapshots are cumulative (the runner joins them). */
final class LedgerBook {
    private final List<ProducerLedger> producers = new ArrayList<>();
    private final List<ConsumerLedger> consumers = new ArrayList<>();

    synchronized ProducerLedger producer(String producerId, String topic) {
        ProducerLedger p = new ProducerLedger(producerId, topic);
        producers.add(p);
        return p;
    }

    synchronized ConsumerLedger consumer(String runId, String topic, String subscription, String consumerId) {
        for (ConsumerLedger c : consumers) if (c.consumerId.equals(consumerId)) return c;
        ConsumerLedger c = new ConsumerLedger(runId, topic, subscription, consumerId);
        consumers.add(c);
        return c;
    }

    synchronized List<ConsumerLedger> consumers() { return new ArrayList<>(consumers); }

    synchronized List<ProducerLedger> producers() { return new ArrayList<>(producers); }

    ObjectNode toJson() {
        ObjectNode o = JsonNodeFactory.instance.objectNode();
        ArrayNode ps = o.putArray("producers");
        for (ProducerLedger p : producers()) ps.add(p.toJson());
        ArrayNode cs = o.putArray("consumers");
        for (ConsumerLedger c : consumers()) cs.add(c.toJson());
        return o;
    }

    /** Acknowledged (oneway: sent) messages of these producers some tracked ledger of their topic lacks. */
    long undelivered(boolean oneway) {
        long missing = 0;
        List<ConsumerLedger> cs = consumers();
        for (ProducerLedger p : producers()) {
            IntervalSet want = null;
            for (ConsumerLedger c : cs) {
                if (!c.topic.equals(p.topic)) continue;
                if (want == null) want = p.expected(oneway);
                missing += c.missing(p.producerId, want);
            }
        }
        return missing;
    }
}
