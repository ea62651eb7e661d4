package bench.worker;

import java.util.ArrayDeque;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.LongAdder;

/** Subscribe/unsubscribe at a rate, keeping `live` churn subscriptions (the Python worker's _churn). */
final class Churn implements Runnable {
    private final Worker w;
    private final Thread thread;
    private volatile double rate;
    private volatile int live = 4;
    private volatile boolean stopped;
    private final Object wake = new Object();
    private final LongAdder churnReceived, subscribed, unsubscribed;
    private final Stats.Hist subscribe, unsubscribe, firstMessage;

    Churn(Worker w) {
        this.w = w;
        churnReceived = w.stats.counter("churn.received");
        subscribed = w.stats.counter("subscribed");
        unsubscribed = w.stats.counter("unsubscribed");
        subscribe = w.stats.hist("subscribe");
        unsubscribe = w.stats.hist("unsubscribe");
        firstMessage = w.stats.hist("first_message");
        thread = new Thread(this, "churn");
        thread.setDaemon(true);
    }

    void set(double opsPerS, int live) {
        this.rate = Math.max(0, opsPerS);
        this.live = Math.max(0, live);
        if (!thread.isAlive() && rate > 0 && !stopped) thread.start();
        synchronized (wake) { wake.notifyAll(); }
    }

    void stop() {
        stopped = true;
        synchronized (wake) { wake.notifyAll(); }
        try {
            thread.join(10_000);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    @Override
    public void run() {
        try {
            loop();
        } catch (Throwable e) {
            w.protocol.failed("churn: " + Protocol.describe(e), Protocol.trace(e));
        }
    }

    private void loop() throws InterruptedException {
        ArrayDeque<Engine.Consumer> open = new ArrayDeque<>();
        long n = 0;
        long nextAt = System.nanoTime();
        while (!stopped && !w.stopping && System.nanoTime() < w.hardDeadlineNs) {
            double r = rate;
            if (r <= 0 || w.spec.topics.isEmpty()) {
                synchronized (wake) { wake.wait(500); }
                nextAt = System.nanoTime();
                continue;
            }
            long delay = nextAt - System.nanoTime();
            if (delay > 0) {
                synchronized (wake) { wake.wait(Math.max(1, delay / 1_000_000)); }
                continue;
            }
            // Intended times never move: a churn that falls behind catches up at full speed.
            nextAt += (long) (1e9 / r);
            String topic = w.spec.topics.get((int) (n % w.spec.topics.size()));
            String name = w.spec.subscriptionPrefix + "-churn-" + w.spec.workerId + "-" + n;
            n++;
            Engine.Consumer c = subscribeOne(topic, name);
            if (c != null) open.add(c);
            while (open.size() > live) unsubscribeOne(open.poll());
        }
        for (Engine.Consumer c : open) c.close();
    }

    private Engine.Consumer subscribeOne(String topic, String name) {
        long started = System.nanoTime();
        AtomicBoolean seen = new AtomicBoolean();
        Engine.Listener l = (data, receiveNs) -> {
            if (!seen.get() && seen.compareAndSet(false, true)) firstMessage.recordSpanNs(System.nanoTime() - started);
            churnReceived.increment();
        };
        try {
            Engine.Consumer c = w.engine.subscribe(topic, name, l, w.consumerClient);
            subscribe.recordSpanNs(System.nanoTime() - started);
            subscribed.increment();
            return c;
        } catch (Exception e) {
            w.countError("subscribe", e);
            return null;
        }
    }

    private void unsubscribeOne(Engine.Consumer c) {
        long started = System.nanoTime();
        try {
            c.unsubscribe();
        } catch (Exception e) {
            w.countError("unsubscribe", e);
            return;
        }
        unsubscribe.recordSpanNs(System.nanoTime() - started);
        unsubscribed.increment();
    }
}
