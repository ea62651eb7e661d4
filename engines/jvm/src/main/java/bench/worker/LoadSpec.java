package bench.worker;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.util.ArrayList;
import java.util.List;

/** setup.spec (docs/worker-protocol.md, "The load spec"), checked like the Python LoadSpec. */
final class LoadSpec {
    final String workerId, broker, path, runId, sendMode, connectionMode, subscriptionPrefix;
    final ObjectNode endpoints, driverSettings;
    final List<String> topics = new ArrayList<>();
    final int producersPerTopic, subscriptionsPerTopic, maxInFlight, batchSize, messageSize, senderThreads;
    final Double ratePerS, durationS;
    final double warmupS, deadlineS, statsIntervalS, ledgerIntervalS, setupTimeoutS;
    final Long maxMessages;

    LoadSpec(JsonNode s) {
        if (s == null || !s.isObject()) throw new SpecError("setup.spec must be an object");
        workerId = str(s, "worker_id", null);
        broker = str(s, "broker", null);
        path = str(s, "path", "direct");
        runId = str(s, "run_id", null);
        sendMode = str(s, "send_mode", "async");
        connectionMode = str(s, "connection_mode", "shared");
        subscriptionPrefix = str(s, "subscription_prefix", "sub");
        endpoints = s.get("endpoints") instanceof ObjectNode o ? o : null;
        driverSettings = s.get("driver_settings") instanceof ObjectNode o ? o : new ObjectNode(null);
        JsonNode t = s.get("topics");
        if (t == null || !t.isArray()) throw new SpecError("spec.topics must be a list of strings");
        for (JsonNode n : t) topics.add(n.asText());
        producersPerTopic = s.path("producers_per_topic").asInt(1);
        subscriptionsPerTopic = s.path("subscriptions_per_topic").asInt(1);
        maxInFlight = s.path("max_in_flight").asInt(1000);
        batchSize = s.path("batch_size").asInt(100);
        messageSize = s.path("message_size").asInt(1024);
        senderThreads = s.path("sender_threads").asInt(1);
        ratePerS = num(s, "rate_per_s");
        durationS = num(s, "duration_s");
        warmupS = s.path("warmup_s").asDouble(0);
        deadlineS = s.path("deadline_s").asDouble(3600);
        statsIntervalS = s.path("stats_interval_s").asDouble(1);
        ledgerIntervalS = s.path("ledger_interval_s").asDouble(5);
        setupTimeoutS = s.path("setup_timeout_s").asDouble(120);
        JsonNode mm = s.get("max_messages");
        maxMessages = mm == null || mm.isNull() ? null : mm.asLong();
        validate();
    }

    private void validate() {
        List<String> p = new ArrayList<>();
        if (workerId.isEmpty() || workerId.contains("/")) p.add("worker_id must be non-empty and without '/'");
        if (!broker.equals("pulsar") && !broker.equals("rocketmq")) p.add("broker must be pulsar or rocketmq, not '" + broker + "'");
        if (!path.equals("direct") && !path.equals("proxy")) p.add("path must be direct or proxy, not '" + path + "'");
        if (!List.of("sync", "async", "oneway").contains(sendMode)) p.add("send_mode '" + sendMode + "' not in (sync, async, oneway)");
        if (!List.of("shared", "per_producer", "per_batch").contains(connectionMode)) {
            p.add("connection_mode '" + connectionMode + "' not in (shared, per_producer, per_batch)");
        }
        if (endpoints == null) p.add("endpoints must be an object");
        if (producersPerTopic < 0 || subscriptionsPerTopic < 0) p.add("producers_per_topic and subscriptions_per_topic must be >= 0");
        if (ratePerS != null && !(Double.isFinite(ratePerS) && ratePerS > 0)) p.add("rate_per_s must be positive or null, not " + ratePerS);
        if (maxInFlight < 1 || batchSize < 1 || senderThreads < 1) p.add("max_in_flight, batch_size and sender_threads must be >= 1");
        if (warmupS < 0 || (durationS != null && durationS <= 0)) p.add("warmup_s must be >= 0 and duration_s positive or null");
        if (deadlineS <= 0 || statsIntervalS <= 0 || ledgerIntervalS <= 0) p.add("deadline_s, stats_interval_s and ledger_interval_s must be > 0");
        if (maxMessages != null && maxMessages < 0) p.add("max_messages must be >= 0 or null");
        int producers = topics.size() * producersPerTopic;
        if (producers > 0) {
            int longest = Payload.headerLength(runId, producerId(producers - 1));
            if (messageSize < longest) p.add("message_size " + messageSize + " is below the header " + longest);
        }
        if (!p.isEmpty()) throw new SpecError("load spec '" + workerId + "': " + String.join("; ", p));
    }

    String producerId(int index) { return workerId + "-p" + index; }

    String subscription(int index) { return subscriptionPrefix + "-" + index; }

    String endpoint(String name) {
        JsonNode v = endpoints.get(name);
        return v == null || v.isNull() ? "" : v.asText();
    }

    private static String str(JsonNode s, String key, String dflt) {
        JsonNode v = s.get(key);
        if (v == null || v.isNull()) {
            if (dflt == null) throw new SpecError("spec." + key + " is missing");
            return dflt;
        }
        if (!v.isTextual()) throw new SpecError("spec." + key + " must be a string");
        return v.asText();
    }

    private static Double num(JsonNode s, String key) {
        JsonNode v = s.get(key);
        if (v == null || v.isNull()) return null;
        if (!v.isNumber()) throw new SpecError("spec." + key + " must be a number or null");
        return v.asDouble();
    }

    /** A spec the worker refuses (reported as a failed event). */
    static final class SpecError extends RuntimeException {
        SpecError(String m) { super(m); }
    }
}
