package bench.worker;

import com.fasterxml.jackson.databind.node.ObjectNode;

/** One broker's clients behind the worker: what PulsarEngine and the RocketMQ engines implement. */
interface Engine extends AutoCloseable {
    /** A client (connection set): shared by the worker, or one per producer / per batch. */
    interface Client {
        void close();
    }

    /** A producer bound to one topic. */
    interface Producer {
        void send(byte[] payload) throws Exception;

        /** Never throws: a failure to hand over the message goes to done too. */
        void sendAsync(byte[] payload, Done done);

        void sendOneway(byte[] payload) throws Exception;

        void close();
    }

    /** Completion of an async send: error null on acknowledgement. */
    interface Done {
        void done(Throwable error);
    }

    /** Receives every message of a subscription (on a client thread); the engine acknowledges it. */
    interface Listener {
        void onMessage(byte[] data, long receiveWallNs);
    }

    interface Consumer {
        String topic();

        void close();

        void unsubscribe() throws Exception;
    }

    /** Raised by setup for a spec the engine cannot run (e.g. ONEWAY through a proxy). */
    final class Unsupported extends RuntimeException {
        Unsupported(String m) { super(m); }
    }

    void checkSendMode(String sendMode);

    Client newClient() throws Exception;

    Producer producer(String topic, Client client) throws Exception;

    Consumer subscribe(String topic, String subscription, Listener listener, Client client) throws Exception;

    /** One of timeout, disconnected, broker_error, client_error, other. */
    String classify(Throwable error);

    /** The driver settings in force (ready.settings). */
    ObjectNode settings();

    /** {"name": ..., "version": ...} of the client library. */
    ObjectNode clientInfo();

    @Override
    void close();

    /** Strips CompletionException / ExecutionException wrappers. */
    static Throwable unwrap(Throwable t) {
        while ((t instanceof java.util.concurrent.CompletionException
                || t instanceof java.util.concurrent.ExecutionException) && t.getCause() != null) {
            t = t.getCause();
        }
        return t;
    }
}
