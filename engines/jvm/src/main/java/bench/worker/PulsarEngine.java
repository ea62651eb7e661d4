package bench.worker;

import org.apache.pulsar.client.api.AuthenticationFactory;
import org.apache.pulsar.client.api.ClientBuilder;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.net.ConnectException;
import java.util.concurrent.TimeUnit;
import org.apache.pulsar.PulsarVersion;
import org.apache.pulsar.client.api.PulsarClient;
import org.apache.pulsar.client.api.PulsarClientException;
import org.apache.pulsar.client.api.SubscriptionInitialPosition;
import org.apache.pulsar.client.api.SubscriptionType;

/** Pulsar on pulsar-client-original: path direct = service_url, path proxy = proxy_url. */
final class PulsarEngine implements Engine {
    private final LoadSpec spec;
    private final Settings s;
    private final String url;

    PulsarEngine(LoadSpec spec) {
        this.spec = spec;
        ObjectNode d = Settings.object();
        d.put("batching", false);
        d.put("batching_max_publish_delay_ms", 1);
        d.put("max_pending_messages", 10000);
        d.put("send_timeout_ms", 30000);
        d.put("operation_timeout_s", 30);
        d.put("io_threads", 1);
        d.put("listener_threads", 1);
        d.put("receiver_queue_size", 10000);  // as the Python driver's: see its DEFAULTS
        d.put("subscription_type", "Shared");
        s = new Settings(d, spec.driverSettings);
        url = spec.endpoint(spec.path.equals("proxy") ? "proxy_url" : "service_url");
        if (url.isEmpty()) {
            throw new Unsupported("the Pulsar endpoints have no " + (spec.path.equals("proxy") ? "proxy_url (start the infra with --proxy)" : "service_url"));
        }
        subscriptionType();  // fails early on a typo
    }

    /** The setting as the Python client names it (KeyShared) or as Java does (Key_Shared). */
    private SubscriptionType subscriptionType() {
        String name = s.text("subscription_type");
        try {
            return SubscriptionType.valueOf(name.equals("KeyShared") ? "Key_Shared" : name);
        } catch (IllegalArgumentException e) {
            throw new Unsupported("subscription_type '" + name + "' is not one of Exclusive, Shared, Failover, KeyShared");
        }
    }

    String fullName(String topic) { return topic.contains("://") ? topic : "persistent://public/default/" + topic; }

    @Override
    public void checkSendMode(String sendMode) {
        if (!sendMode.equals("sync") && !sendMode.equals("async")) {
            throw new Unsupported("pulsar engine cannot send '" + sendMode + "' (it supports async, sync)");
        }
    }

    record PClient(PulsarClient client) implements Client {
        @Override
        public void close() {
            try {
                client.close();
            } catch (Exception e) {
                System.err.println("pulsar client close: " + e);
            }
        }
    }

    @Override
    public Client newClient() throws Exception {
        ClientBuilder builder = PulsarClient.builder();
        String token = Secrets.fromEnv(spec, "auth_token_env");
        if (token != null) builder.authentication(AuthenticationFactory.token(token));
        String ca = spec.endpoint("tls_ca_file");
        if (!ca.isEmpty()) builder.tlsTrustCertsFilePath(ca);
        if (url.startsWith("pulsar+ssl://")) {
            builder.enableTlsHostnameVerification(!spec.endpoints.path("tls_skip_hostname_check").asBoolean(false));
        }
        return new PClient(builder
                .serviceUrl(url)
                .ioThreads(s.integer("io_threads"))
                .listenerThreads(s.integer("listener_threads"))
                .operationTimeout(s.integer("operation_timeout_s"), TimeUnit.SECONDS)
                .build());
    }

    @Override
    public Producer producer(String topic, Client client) throws Exception {
        org.apache.pulsar.client.api.Producer<byte[]> p = ((PClient) client).client().newProducer()
                .topic(fullName(topic))
                .sendTimeout(s.integer("send_timeout_ms"), TimeUnit.MILLISECONDS)
                .maxPendingMessages(s.integer("max_pending_messages"))
                .blockIfQueueFull(true)
                .enableBatching(s.bool("batching"))
                .batchingMaxPublishDelay(s.longValue("batching_max_publish_delay_ms"), TimeUnit.MILLISECONDS)
                .create();
        return new Producer() {
            @Override
            public void send(byte[] payload) throws Exception { p.send(payload); }

            @Override
            public void sendAsync(byte[] payload, Done done) {
                try {
                    p.sendAsync(payload).whenComplete((id, error) -> done.done(error));
                } catch (Throwable e) {
                    done.done(e);
                }
            }

            @Override
            public void sendOneway(byte[] payload) { throw new Unsupported("pulsar has no oneway send"); }

            @Override
            public void close() {
                try {
                    p.close();
                } catch (Exception e) {
                    System.err.println("pulsar producer close: " + e);
                }
            }
        };
    }

    @Override
    public Consumer subscribe(String topic, String subscription, Listener listener, Client client) throws Exception {
        org.apache.pulsar.client.api.Consumer<byte[]> c = ((PClient) client).client().newConsumer()
                .topic(fullName(topic))
                .subscriptionName(subscription)
                .subscriptionType(subscriptionType())
                .receiverQueueSize(s.integer("receiver_queue_size"))
                .subscriptionInitialPosition(SubscriptionInitialPosition.Latest)
                .messageListener((consumer, msg) -> {
                    long now = Clock.wallNs();
                    try {
                        listener.onMessage(msg.getData(), now);
                    } finally {
                        consumer.acknowledgeAsync(msg);
                    }
                })
                .subscribe();
        return new Consumer() {
            @Override
            public String topic() { return topic; }

            @Override
            public void close() {
                try {
                    c.close();
                } catch (Exception e) {
                    System.err.println("pulsar consumer close: " + e);
                }
            }

            @Override
            public void unsubscribe() throws Exception { c.unsubscribe(); }
        };
    }

    @Override
    public String classify(Throwable e) {
        if (e instanceof PulsarClientException.TimeoutException || e instanceof java.util.concurrent.TimeoutException) return "timeout";
        if (e instanceof PulsarClientException.ConnectException || e instanceof PulsarClientException.NotConnectedException
                || e instanceof PulsarClientException.AlreadyClosedException || e instanceof ConnectException
                || e instanceof java.io.IOException && !(e instanceof PulsarClientException)) {
            return "disconnected";
        }
        if (e instanceof PulsarClientException.ProducerQueueIsFullError || e instanceof PulsarClientException.MemoryBufferIsFullError
                || e instanceof PulsarClientException.InvalidConfigurationException || e instanceof PulsarClientException.InvalidTopicNameException
                || e instanceof PulsarClientException.InvalidServiceURL || e instanceof PulsarClientException.InvalidMessageException
                || e instanceof PulsarClientException.NotSupportedException || e instanceof Unsupported
                || e instanceof IllegalArgumentException || e instanceof IllegalStateException || e instanceof InterruptedException) {
            return "client_error";
        }
        if (e instanceof PulsarClientException) return "broker_error";
        return "other";
    }

    @Override
    public ObjectNode settings() {
        ObjectNode o = s.record("pulsar", spec.path);
        o.put("service_url", url);
        o.put("namespace", "public/default");
        o.put("client_version", PulsarVersion.getVersion());
        return o;
    }

    @Override
    public ObjectNode clientInfo() {
        ObjectNode o = Settings.object();
        o.put("name", "pulsar-client-original");
        o.put("version", PulsarVersion.getVersion());
        return o;
    }

    @Override
    public void close() {}
}
