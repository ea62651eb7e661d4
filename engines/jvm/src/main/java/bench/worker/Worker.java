package bench.worker;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;

/** One worker's life: setup, ready, go, the control loop (stats, drain, commands), stop, exit. */
final class Worker {
    static final String EOF = "\u0000eof";
    private static final long NS = 1_000_000_000L, TICK_NS = 50_000_000L;

    final LoadSpec spec;
    final Protocol protocol;
    final Stats stats;
    final LedgerBook book = new LedgerBook();
    private final BlockingQueue<String> commands;
    final long startedNs = System.nanoTime();
    final long hardDeadlineNs;
    Engine engine;
    Engine.Client shared, consumerClient;
    Senders senders;
    final Consumers consumers;
    volatile boolean stopping;
    private Churn churn;
    private static final int ERROR_LINES_PER_KIND = 3;
    private final ConcurrentHashMap<String, AtomicInteger> errorLines = new ConcurrentHashMap<>();

    Worker(LoadSpec spec, Protocol protocol, BlockingQueue<String> commands) {
        this.spec = spec;
        this.protocol = protocol;
        this.commands = commands;
        this.hardDeadlineNs = startedNs + (long) (spec.deadlineS * NS);
        this.stats = new Stats(spec.workerId, Clock.wallNs());
        this.consumers = new Consumers(this);
    }

    void countError(String operation, Throwable e) {
        String kind;
        try {
            kind = engine == null ? "other" : engine.classify(Engine.unwrap(e));
        } catch (RuntimeException bug) {
            kind = "other";
        }
        stats.error(operation, kind);
        logFirst(operation, kind, e);
    }

    /** The first few errors of each (operation, kind) go to the worker log (stderr): the counts
     *  alone do not say which broker answer they were. Bounded: a flood of errors writes a few
     *  lines, not one a message. */
    private void logFirst(String operation, String kind, Throwable e) {
        AtomicInteger seen = errorLines.computeIfAbsent(operation + "." + kind, k -> new AtomicInteger());
        if (seen.incrementAndGet() <= ERROR_LINES_PER_KIND) {
            System.err.println("worker " + spec.workerId + ": " + operation + " error (" + kind + "): " + Protocol.describe(e));
        }
    }

    long sendTimeoutNs() {
        return (long) ((spec.driverSettings.path("send_timeout_ms").asDouble(30000) / 1000 + 5.0) * NS);
    }

    private void setup() throws Exception {
        engine = Engines.open(spec);
        if (spec.producersPerTopic > 0 && !spec.topics.isEmpty()) engine.checkSendMode(spec.sendMode);
        senders = new Senders(this);
        shared = engine.newClient();
        consumerClient = spec.connectionMode.equals("shared") ? shared : engine.newClient();
        // Consumers first: a subscription that exists before the first send sees every message.
        if (spec.subscriptionsPerTopic > 0 && !spec.topics.isEmpty()) consumers.warmUp(spec.topics.get(0));
        for (String topic : spec.topics) {
            for (int s = 0; s < spec.subscriptionsPerTopic; s++) consumers.subscribeTracked(topic, spec.subscription(s));
        }
        int index = 0;
        for (String topic : spec.topics) {
            for (int i = 0; i < spec.producersPerTopic; i++) {
                String pid = spec.producerId(index++);
                Slot slot = new Slot(pid, topic, book.producer(pid, topic), new Payload(spec.runId, pid, spec.messageSize));
                Throwable error = senders.open(slot);
                if (error != null) {
                    throw new IllegalStateException("could not create producer " + pid + " on " + topic + ": " + Protocol.describe(error), error);
                }
                senders.slots.add(slot);
            }
        }
    }

    /** Runs the worker; returns the exit code. */
    int run() throws InterruptedException {
        try {
            setup();
        } catch (Throwable e) {
            protocol.failed(e instanceof LoadSpec.SpecError || e instanceof Engine.Unsupported
                    ? e.getMessage() : Protocol.describe(e), Protocol.trace(e));
            shutdown();
            return 1;
        }
        ObjectNode ready = Protocol.event("ready");
        ready.put("protocol", Protocol.VERSION);
        ready.put("engine", "jvm");
        ready.put("worker_id", spec.workerId);
        ready.put("producers", senders.slots.size());
        ready.put("consumers", consumers.tracked());
        ready.put("setup_s", (System.nanoTime() - startedNs) / 1e9);
        ready.set("settings", engine.settings());
        ready.set("client", engine.clientInfo());
        protocol.emit(ready);
        if (!waitGo()) {
            shutdown();
            return 2;
        }
        long go = System.nanoTime();
        // Setup (subscribing, creating producers) gets an interval of its own.
        ship(Clock.wallNs(), true, false, true);
        senders.deadlineNs = hardDeadlineNs;
        if (spec.durationS != null) {
            senders.deadlineNs = Math.min(hardDeadlineNs, go + (long) ((spec.warmupS + spec.durationS) * NS));
        }
        senders.plan = new Senders.Plan(spec.ratePerS, go);
        long warmupEnd = spec.warmupS > 0 ? go + (long) (spec.warmupS * NS) : Long.MAX_VALUE;
        senders.start();
        long statsNs = (long) (spec.statsIntervalS * NS), ledgerNs = (long) (spec.ledgerIntervalS * NS);
        long nextStats = go + statsNs, nextLedger = go + ledgerNs, nextDrainCheck = 0;
        boolean producersDone = false;
        Drain drain = null;
        int code = 0;
        while (!stopping) {
            long now = System.nanoTime();
            long wake = Math.min(Math.min(nextStats, warmupEnd), now + TICK_NS);
            String line = commands.poll(Math.max(0, wake - now), TimeUnit.NANOSECONDS);
            now = System.nanoTime();
            if (line != null) {
                if (line.equals(EOF)) break;
                JsonNode cmd = parse(line);
                String name = cmd == null ? "" : cmd.path("cmd").asText();
                if (name.equals("stop")) break;
                if (!name.isEmpty()) drain = handle(name, cmd, now, drain);
            }
            if (now >= warmupEnd) {
                // Cut exactly at the warm-up's end: that interval is the last warm-up one.
                ship(Clock.wallNs() - (now - warmupEnd), true, false, false);
                nextStats = warmupEnd + statsNs;
                warmupEnd = Long.MAX_VALUE;
            }
            if (now >= nextStats) {
                boolean withLedger = now >= nextLedger;
                ship(Clock.wallNs(), warmupEnd != Long.MAX_VALUE, withLedger, false);
                if (withLedger) nextLedger = now + ledgerNs;
                nextStats = Math.max(nextStats + statsNs, now);
            }
            if (!producersDone && !senders.alive()) {
                producersDone = true;
                ObjectNode e = Protocol.event("producers_done");
                e.put("sent", senders.sentTotal());
                protocol.emit(e);
            }
            if (drain != null && now >= nextDrainCheck) {
                nextDrainCheck = now + 200_000_000L;  // reconciling is not free
                boolean sending = senders.window.inFlight() > 0 || senders.alive();
                ObjectNode outcome = drain.check(now, sending ? -1 : book.undelivered(spec.sendMode.equals("oneway")));
                if (outcome != null) {
                    // Every send and receipt up to here is in a stats interval before drained:
                    // the runner's series then add up to the ledger it reconciles.
                    ship(Clock.wallNs(), false, false, false);
                    outcome.set("ledger", book.toJson());
                    protocol.emit(outcome);
                    drain = null;
                }
            }
            if (now >= hardDeadlineNs) {
                code = 3;
                break;
            }
        }
        senders.stopAll(Math.min(5 * NS, sendTimeoutNs()));
        ship(Clock.wallNs(), false, true, false);
        shutdown();
        return code;
    }

    private Drain handle(String name, JsonNode cmd, long now, Drain drain) {
        switch (name) {
            case "stop_producers" -> senders.stop = true;
            case "set_rate" -> {
                JsonNode r = cmd.get("rate_per_s");
                Double rate = r == null || r.isNull() ? null : r.asDouble();
                if (rate != null && !(Double.isFinite(rate) && rate > 0)) {
                    protocol.failed("set_rate: rate_per_s must be positive or null, not " + r, "");
                } else {
                    senders.plan = new Senders.Plan(rate, now);
                }
            }
            case "add_subscriptions" -> {
                JsonNode t = cmd.get("topics");
                List<String> topics = null;
                if (t != null && t.isArray()) {
                    topics = new ArrayList<>();
                    for (JsonNode x : t) topics.add(x.asText());
                }
                consumers.addUntracked(topics, cmd.path("n").asInt(0));
            }
            case "churn" -> {
                if (churn == null) churn = new Churn(this);
                churn.set(cmd.path("ops_per_s").asDouble(0), cmd.path("live").asInt(4));
            }
            case "ledger" -> emitLedger();
            case "drain" -> {
                senders.stop = true;
                JsonNode stall = cmd.get("stall_s");
                return new Drain(now, cmd.path("timeout_s").asDouble(60),
                        stall == null || stall.isNull() ? null : stall.asDouble());
            }
            case "go", "setup" -> protocol.failed("unexpected command '" + name + "' after go", "");
            default -> protocol.failed("unknown cmd '" + name + "'; known: add_subscriptions, churn, drain, go, "
                    + "ledger, set_rate, setup, stop, stop_producers", "");
        }
        return drain;
    }

    private void emitLedger() {
        ObjectNode e = Protocol.event("ledger");
        e.set("ledger", book.toJson());
        protocol.emit(e);
    }

    /** A command line as JSON, or null after answering failed. */
    JsonNode parse(String line) {
        try {
            JsonNode n = Protocol.JSON.readTree(line);
            if (n != null && n.isObject() && n.path("cmd").isTextual()) return n;
            protocol.failed("a protocol line must be an object with 'cmd': " + abbreviate(line), "");
        } catch (Exception e) {
            protocol.failed("not a JSON line: " + abbreviate(line) + " (" + Protocol.oneLine(e.getMessage()) + ")", "");
        }
        return null;
    }

    private static String abbreviate(String s) { return s.length() > 80 ? s.substring(0, 80) + "..." : s; }

    private boolean waitGo() throws InterruptedException {
        long deadline = Math.min(System.nanoTime() + (long) (spec.setupTimeoutS * NS), hardDeadlineNs);
        while (System.nanoTime() < deadline) {
            String line = commands.poll(TICK_NS, TimeUnit.NANOSECONDS);
            if (line == null) continue;
            if (line.equals(EOF)) return false;
            JsonNode cmd = parse(line);
            if (cmd == null) continue;
            switch (cmd.path("cmd").asText()) {
                case "go" -> { return true; }
                case "stop" -> { return false; }
                case "ledger" -> emitLedger();
                default -> { } // nothing is running yet: other commands wait for go
            }
        }
        return false;
    }

    void ship(long endWallNs, boolean warmup, boolean withLedger, boolean setup) {
        ObjectNode s = stats.snapshot(endWallNs);
        Clock.recalibrate();
        ObjectNode counters = (ObjectNode) s.get("counters");
        if (warmup) counters.put("interval.warmup", 1);
        if (setup) counters.put("interval.setup", 1);
        if (withLedger) s.set("ledger", book.toJson());
        ObjectNode e = Protocol.event("stats");
        e.set("stats", s);
        protocol.emit(e);
    }

    /** Closes everything, each step bounded in time by the caller's watchdog. */
    void shutdown() {
        stopping = true;
        // A client blocked on a dead broker must not hold the exit: closing gets 15 s.
        Thread closer = new Thread(this::closeAll, "shutdown");
        closer.setDaemon(true);
        closer.start();
        try {
            closer.join(15_000);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    private void closeAll() {
        if (senders != null) senders.stop = true;
        if (churn != null) churn.stop();
        consumers.closeAll();
        if (senders != null) for (Slot slot : senders.slots) senders.closeProducer(slot);
        if (consumerClient != null && consumerClient != shared) consumerClient.close();
        if (shared != null) shared.close();
        if (engine != null) engine.close();
    }
}
