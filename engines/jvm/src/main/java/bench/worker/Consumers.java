package bench.worker;

import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.atomic.LongAdder;
import java.util.concurrent.locks.Lock;

/** The worker's subscriptions: tracked ones (with a ledger) and added, untracked ones. */
final class Consumers {
    private final Worker w;
    private final List<Engine.Consumer> tracked = new ArrayList<>();
    private final List<Engine.Consumer> extra = new ArrayList<>();
    private final byte[] runBytes;
    private final LongAdder received, duplicates, foreign, undecodable, subscribed;
    private final Stats.Hist e2e, subscribe;

    Consumers(Worker w) {
        this.w = w;
        runBytes = w.spec.runId.getBytes(StandardCharsets.UTF_8);
        received = w.stats.counter("received");
        duplicates = w.stats.counter("duplicates");
        foreign = w.stats.counter("foreign");
        undecodable = w.stats.counter("undecodable");
        subscribed = w.stats.counter("subscribed");
        e2e = w.stats.hist("e2e");
        subscribe = w.stats.hist("subscribe");
    }

    synchronized int tracked() { return tracked.size(); }

    /** Subscribes with a ledger; raises when subscribing fails (setup then fails). */
    void subscribeTracked(String topic, String subscription) throws Exception {
        String id = w.spec.workerId + "/" + topic + "/" + subscription;
        ConsumerLedger ledger = w.book.consumer(w.spec.runId, topic, subscription, id);
        try {
            Engine.Consumer c = open(topic, subscription, listener(ledger));
            synchronized (this) { tracked.add(c); }
        } catch (Exception e) {
            w.countError("subscribe", e);
            throw new IllegalStateException("could not subscribe " + subscription + " to " + topic + ": " + Protocol.describe(e), e);
        }
    }

    /**
     * One unmeasured subscribe and unsubscribe on a scratch subscription before the measured ones.
     * A fresh JVM's first subscribe also loads the client's classes and opens its connection: a
     * cost of our worker, which with a few subscribes a worker would be the step's subscribe p99.
     * A failure is left to the measured subscribe that follows to count.
     */
    void warmUp(String topic) {
        String name = w.spec.subscriptionPrefix + "-warmup-" + w.spec.workerId;
        Engine.Consumer c;
        try {
            c = w.engine.subscribe(topic, name, (data, receiveNs) -> { }, w.consumerClient);
        } catch (Exception e) {
            System.err.println("warm-up subscribe: " + Protocol.describe(e));
            return;
        }
        try {
            c.unsubscribe();
        } catch (Exception e) {
            System.err.println("warm-up unsubscribe: " + Protocol.describe(e));
            c.close();
        }
    }

    /** Adds n untracked subscriptions per topic (they start at the end: not reconciled). */
    void addUntracked(List<String> topics, int n) {
        int base = w.spec.subscriptionsPerTopic;
        for (String topic : w.spec.topics) {
            if (topics != null && !topics.contains(topic)) continue;
            int have;
            synchronized (this) { have = (int) extra.stream().filter(c -> c.topic().equals(topic)).count(); }
            for (int i = 0; i < n; i++) {
                String name = w.spec.subscription(base + have + i);
                try {
                    Engine.Consumer c = open(topic, name, listener(null));
                    synchronized (this) { extra.add(c); }
                } catch (Exception e) {
                    w.countError("subscribe", e);
                }
            }
        }
    }

    private Engine.Consumer open(String topic, String subscription, Engine.Listener l) throws Exception {
        long started = System.nanoTime();
        Engine.Consumer c = w.engine.subscribe(topic, subscription, l, w.consumerClient);
        subscribe.recordSpanNs(System.nanoTime() - started);
        subscribed.increment();
        return c;
    }

    private Engine.Listener listener(ConsumerLedger ledger) {
        return (data, receiveNs) -> {
            try {
                int kind = ledger != null ? ledger.record(data) : ConsumerLedger.classify(data, runBytes);
                switch (kind) {
                    case ConsumerLedger.FIRST -> {
                        Lock together = w.stats.together();
                        together.lock();
                        try {
                            received.increment();
                            e2e.recordUs(Math.floorDiv(receiveNs - Payload.sendNs(data), 1000L));
                        } finally {
                            together.unlock();
                        }
                    }
                    case ConsumerLedger.DUPLICATE -> {
                        received.increment();
                        duplicates.increment();
                    }
                    case ConsumerLedger.FOREIGN -> foreign.increment();
                    default -> undecodable.increment();
                }
            } catch (Throwable e) {  // never into the client's thread
                w.countError("consume", e);
            }
        };
    }

    void closeAll() {
        List<Engine.Consumer> all;
        synchronized (this) {
            all = new ArrayList<>(tracked);
            all.addAll(extra);
        }
        for (Engine.Consumer c : all) c.close();
    }
}
