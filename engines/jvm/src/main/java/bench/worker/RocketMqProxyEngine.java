package bench.worker;

import com.fasterxml.jackson.databind.node.ObjectNode;
import java.nio.ByteBuffer;
import java.time.Duration;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import org.apache.rocketmq.client.apis.ClientConfiguration;
import org.apache.rocketmq.client.apis.ClientConfigurationBuilder;
import org.apache.rocketmq.client.apis.StaticSessionCredentialsProvider;
import org.apache.rocketmq.client.apis.ClientException;
import org.apache.rocketmq.client.apis.ClientServiceProvider;
import org.apache.rocketmq.client.apis.consumer.ConsumeResult;
import org.apache.rocketmq.client.apis.consumer.FilterExpression;
import org.apache.rocketmq.client.apis.consumer.FilterExpressionType;
import org.apache.rocketmq.client.apis.consumer.PushConsumer;

/**
 * RocketMQ, path proxy: rocketmq-client-java (5.x gRPC) to the proxy. A client is one
 * configuration with one 5.x Producer serving every topic; a subscription is a consumer group,
 * one PushConsumer per (client, group). ONEWAY does not exist on this path.
 */
final class RocketMqProxyEngine implements Engine {
    static final String VERSION = Versions.of("org.apache.rocketmq", "rocketmq-client-java");
    private final LoadSpec spec;
    private final String accessKey, secretKey;
    private final Settings s;
    private final String endpoint;
    private final ClientServiceProvider provider = ClientServiceProvider.loadService();

    RocketMqProxyEngine(LoadSpec spec) {
        this.spec = spec;
        ObjectNode d = Settings.object();
        d.put("request_timeout_s", 3);
        d.put("consume_threads", 2);
        d.put("max_cache_messages", 4096);
        s = new Settings(d, spec.driverSettings);
        endpoint = spec.endpoint("grpc_endpoint");
        accessKey = Secrets.fromEnv(spec, "acl_access_key_env");
        secretKey = Secrets.fromEnv(spec, "acl_secret_key_env");
        if (endpoint.isEmpty()) throw new Unsupported("the RocketMQ endpoints have no grpc_endpoint (the proxy)");
    }

    /** ACL credentials from the environment variables the endpoints name, if any. */
    private ClientConfigurationBuilder credentials(ClientConfigurationBuilder b) {
        if (accessKey != null && secretKey != null) {
            b.setCredentialProvider(new StaticSessionCredentialsProvider(accessKey, secretKey));
        }
        return b;
    }

    @Override
    public void checkSendMode(String sendMode) {
        if (sendMode.equals("oneway")) {
            throw new Unsupported("rocketmq path proxy cannot send 'oneway' (the 5.x proxy has no ONEWAY; use path direct)");
        }
    }

    final class GClient implements Client {
        final ClientConfiguration config = credentials(ClientConfiguration.newBuilder())
                .setEndpoints(endpoint)
                .setRequestTimeout(Duration.ofSeconds(s.integer("request_timeout_s")))
                .build();
        private org.apache.rocketmq.client.apis.producer.Producer producer;
        final ConcurrentHashMap<String, PushConsumer> groups = new ConcurrentHashMap<>();
        final ConcurrentHashMap<String, Map<String, Listener>> listeners = new ConcurrentHashMap<>();

        synchronized org.apache.rocketmq.client.apis.producer.Producer producer(String topic) throws ClientException {
            if (producer == null) producer = provider.newProducerBuilder().setClientConfiguration(config).setTopics(topic).build();
            return producer;
        }

        @Override
        public synchronized void close() {
            for (PushConsumer c : groups.values()) quietly(c);
            groups.clear();
            if (producer != null) quietly(producer);
            producer = null;
        }
    }

    private static void quietly(AutoCloseable c) {
        try {
            c.close();
        } catch (Exception e) {
            System.err.println("rocketmq close: " + e);
        }
    }

    @Override
    public Client newClient() { return new GClient(); }

    @Override
    public Producer producer(String topic, Client client) throws Exception {
        org.apache.rocketmq.client.apis.producer.Producer p = ((GClient) client).producer(topic);
        return new Producer() {
            @Override
            public void send(byte[] payload) throws Exception {
                p.send(provider.newMessageBuilder().setTopic(topic).setBody(payload).build());
            }

            @Override
            public void sendAsync(byte[] payload, Done done) {
                try {
                    p.sendAsync(provider.newMessageBuilder().setTopic(topic).setBody(payload).build())
                            .whenComplete((receipt, error) -> done.done(error));
                } catch (Throwable e) {
                    done.done(e);
                }
            }

            @Override
            public void sendOneway(byte[] payload) { throw new Unsupported("no oneway on the proxy path"); }

            @Override
            public void close() {}  // goes with its client
        };
    }

    @Override
    public Consumer subscribe(String topic, String group, Listener listener, Client c) throws Exception {
        GClient client = (GClient) c;
        FilterExpression all = new FilterExpression("*", FilterExpressionType.TAG);
        synchronized (client) {
            Map<String, Listener> byTopic = client.listeners.computeIfAbsent(group, k -> new ConcurrentHashMap<>());
            byTopic.put(topic, listener);
            PushConsumer pc = client.groups.get(group);
            if (pc == null) {
                pc = provider.newPushConsumerBuilder()
                        .setClientConfiguration(client.config)
                        .setConsumerGroup(group)
                        .setSubscriptionExpressions(new java.util.HashMap<>(Map.of(topic, all)))
                        .setConsumptionThreadCount(s.integer("consume_threads"))
                        .setMaxCacheMessageCount(s.integer("max_cache_messages"))
                        .setMessageListener(view -> {
                            long now = Clock.wallNs();
                            Listener l = byTopic.get(view.getTopic());
                            if (l != null) {
                                ByteBuffer body = view.getBody();
                                byte[] data = new byte[body.remaining()];
                                body.get(data);
                                l.onMessage(data, now);
                            }
                            return ConsumeResult.SUCCESS;
                        })
                        .build();
                client.groups.put(group, pc);
            } else {
                pc.subscribe(topic, all);
            }
        }
        return new Consumer() {
            @Override
            public String topic() { return topic; }

            @Override
            public void close() {
                synchronized (client) {
                    Map<String, Listener> byTopic = client.listeners.get(group);
                    if (byTopic != null) byTopic.remove(topic);
                    PushConsumer pc = client.groups.get(group);
                    if (pc == null) return;
                    if (byTopic == null || byTopic.isEmpty()) {
                        client.groups.remove(group);
                        client.listeners.remove(group);
                        quietly(pc);
                    } else {
                        try {
                            pc.unsubscribe(topic);
                        } catch (ClientException e) {
                            System.err.println("rocketmq unsubscribe: " + e);
                        }
                    }
                }
            }

            @Override
            public void unsubscribe() { close(); }  // the 5.x client cannot delete a group
        };
    }

    @Override
    public String classify(Throwable e) {
        String name = e.getClass().getSimpleName();
        String text = String.valueOf(e.getMessage());
        for (Throwable t = e.getCause(); t != null && t != t.getCause(); t = t.getCause()) text += " " + t;
        if (name.equals("ProxyTimeoutException") || e instanceof java.util.concurrent.TimeoutException || text.contains("DEADLINE_EXCEEDED")) {
            return "timeout";
        }
        if (text.contains("UNAVAILABLE") || e instanceof java.net.ConnectException) return "disconnected";
        if (name.equals("BadRequestException") || name.equals("UnsupportedException") || name.equals("PayloadTooLargeException")
                || name.equals("TooManyRequestsException") || e instanceof Unsupported
                || e instanceof IllegalArgumentException || e instanceof IllegalStateException) {
            return "client_error";
        }
        if (e instanceof ClientException) return "broker_error";
        return "other";
    }

    @Override
    public ObjectNode settings() {
        ObjectNode o = s.record("rocketmq", spec.path);
        o.put("grpc_endpoint", endpoint);
        o.put("client_version", VERSION);
        return o;
    }

    @Override
    public ObjectNode clientInfo() {
        ObjectNode o = Settings.object();
        o.put("name", "rocketmq-client-java");
        o.put("version", VERSION);
        return o;
    }

    @Override
    public void close() {}
}
