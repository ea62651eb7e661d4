package bench.worker;

import java.util.concurrent.atomic.AtomicInteger;

/** One producer of the worker: its ledger, next sequence number and (re-creatable) client objects. */
final class Slot {
    final String producerId;
    final String topic;
    final ProducerLedger ledger;
    final Payload payload;
    long seq;                       // only the owning sender thread writes it
    volatile long sentTotal;        // seq, published for producers_done
    volatile Engine.Producer producer;
    volatile Engine.Client client;  // owned by this slot (not the shared one)
    int onClient;
    long nextRecreateNs;
    final AtomicInteger inFlight = new AtomicInteger();

    Slot(String producerId, String topic, ProducerLedger ledger, Payload payload) {
        this.producerId = producerId;
        this.topic = topic;
        this.ledger = ledger;
        this.payload = payload;
    }

    /** Waits until this slot's async sends are all acknowledged or failed; false on timeout. */
    boolean awaitIdle(long timeoutNs) {
        long deadline = System.nanoTime() + timeoutNs;
        while (inFlight.get() > 0) {
            if (System.nanoTime() >= deadline) return false;
            try {
                Thread.sleep(1);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                return false;
            }
        }
        return true;
    }
}
