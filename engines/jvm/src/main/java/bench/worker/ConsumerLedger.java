package bench.worker;

import com.fasterxml.jackson.databind.node.JsonNodeFactory;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.nio.charset.StandardCharsets;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * What one (worker, topic, subscription) received, per producer, as ranges. Thread-safe. Decodes
 * the header itself so a receipt costs no String: the last producer id seen is cached by bytes.
 */
final class ConsumerLedger {
    static final int FIRST = 0, DUPLICATE = 1, FOREIGN = 2, UNDECODABLE = 3;

    static final class From {
        final IntervalSet received = new IntervalSet();
        long duplicates, reordered, maxSeen = -1;
    }

    final String runId;
    final String topic;
    final String subscription;
    final String consumerId;
    private final byte[] runBytes;
    private final Map<String, From> byProducer = new LinkedHashMap<>();
    private long foreign, undecodable;
    private byte[] lastPid = new byte[0];
    private From lastFrom;

    ConsumerLedger(String runId, String topic, String subscription, String consumerId) {
        this.runId = runId;
        this.topic = topic;
        this.subscription = subscription;
        this.consumerId = consumerId;
        this.runBytes = runId.getBytes(StandardCharsets.UTF_8);
    }

    /** FIRST, DUPLICATE, FOREIGN or UNDECODABLE for a payload of another worker or run. */
    static int classify(byte[] data, byte[] runBytes) {
        if (!Payload.wellFormed(data)) return UNDECODABLE;
        int r = Payload.runLength(data), p = Payload.producerLength(data);
        if (r == runBytes.length && Arrays.equals(data, Payload.FIXED, Payload.FIXED + r, runBytes, 0, r)) {
            return Payload.utf8(data, Payload.FIXED + r, p) == null ? UNDECODABLE : FIRST;
        }
        if (Payload.utf8(data, Payload.FIXED, r) == null || Payload.utf8(data, Payload.FIXED + r, p) == null) {
            return UNDECODABLE;
        }
        return FOREIGN;
    }

    /** Records one receipt; returns FIRST, DUPLICATE, FOREIGN or UNDECODABLE. */
    synchronized int record(byte[] data) {
        if (!Payload.wellFormed(data)) {
            undecodable++;
            return UNDECODABLE;
        }
        int r = Payload.runLength(data), p = Payload.producerLength(data);
        int pidAt = Payload.FIXED + r;
        From from;
        if (lastFrom != null && p == lastPid.length && r == runBytes.length
                && Arrays.equals(data, pidAt, pidAt + p, lastPid, 0, p)
                && Arrays.equals(data, Payload.FIXED, pidAt, runBytes, 0, r)) {
            from = lastFrom;
        } else {
            int kind = classify(data, runBytes);
            if (kind != FIRST) {
                if (kind == FOREIGN) foreign++; else undecodable++;
                return kind;
            }
            String pid = Payload.utf8(data, pidAt, p);
            from = byProducer.computeIfAbsent(pid, k -> new From());
            lastPid = Arrays.copyOfRange(data, pidAt, pidAt + p);
            lastFrom = from;
        }
        long seq = Payload.seq(data);
        if (!from.received.add(seq)) {
            from.duplicates++;
            return DUPLICATE;
        }
        if (seq < from.maxSeen) from.reordered++; else from.maxSeen = seq;
        return FIRST;
    }

    /** How many of want (a producer's acknowledged set) this ledger lacks. */
    synchronized long missing(String producerId, IntervalSet want) {
        From from = byProducer.get(producerId);
        return from == null ? want.size() : want.size() - want.intersectionSize(from.received);
    }

    synchronized ObjectNode toJson() {
        ObjectNode o = JsonNodeFactory.instance.objectNode();
        o.put("run_id", runId);
        o.put("topic", topic);
        o.put("subscription", subscription);
        o.put("consumer_id", consumerId);
        o.put("foreign", foreign);
        o.put("undecodable", undecodable);
        ObjectNode by = o.putObject("by_producer");
        for (Map.Entry<String, From> e : byProducer.entrySet()) {
            From f = e.getValue();
            ObjectNode r = by.putObject(e.getKey());
            f.received.writeTo(r.putArray("received"));
            r.put("duplicates", f.duplicates);
            r.put("reordered", f.reordered);
            r.put("max_seen", f.maxSeen);
        }
        return o;
    }
}
