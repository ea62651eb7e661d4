package bench.worker;

import com.fasterxml.jackson.databind.node.ObjectNode;
import java.util.List;
import java.util.concurrent.AbstractExecutorService;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import org.apache.rocketmq.client.ClientConfig;
import org.apache.rocketmq.client.consumer.AllocateMessageQueueStrategy;
import org.apache.rocketmq.client.consumer.DefaultMQPushConsumer;
import org.apache.rocketmq.client.consumer.listener.ConsumeConcurrentlyStatus;
import org.apache.rocketmq.client.consumer.listener.MessageListenerConcurrently;
import org.apache.rocketmq.client.exception.MQBrokerException;
import org.apache.rocketmq.client.exception.MQClientException;
import org.apache.rocketmq.client.impl.MQClientManager;
import org.apache.rocketmq.client.impl.factory.MQClientInstance;
import org.apache.rocketmq.client.producer.DefaultMQProducer;
import org.apache.rocketmq.client.producer.SendCallback;
import org.apache.rocketmq.client.producer.SendResult;
import org.apache.rocketmq.common.MQVersion;
import org.apache.rocketmq.common.consumer.ConsumeFromWhere;
import org.apache.rocketmq.common.message.Message;
import org.apache.rocketmq.common.message.MessageExt;
import org.apache.rocketmq.common.message.MessageQueue;
import org.apache.rocketmq.remoting.RPCHook;
import org.apache.rocketmq.remoting.exception.RemotingConnectException;
import org.apache.rocketmq.remoting.exception.RemotingSendRequestException;
import org.apache.rocketmq.remoting.exception.RemotingTimeoutException;
import org.apache.rocketmq.remoting.exception.RemotingTooMuchRequestException;

/**
 * RocketMQ, path direct: rocketmq-client (remoting) to the name server and brokers. A client is
 * an MQClientInstance (a distinct instanceName) with one DefaultMQProducer serving every topic;
 * a subscription is a consumer group, one DefaultMQPushConsumer per (client, group).
 */
final class RocketMqRemotingEngine implements Engine {
    private static final AtomicInteger CLIENTS = new AtomicInteger();
    /** Runs a task on the thread that submits it (an async send starts on the sender's thread). */
    private static final ExecutorService CALLER = new AbstractExecutorService() {
        @Override
        public void execute(Runnable task) { task.run(); }

        @Override
        public void shutdown() {}

        @Override
        public List<Runnable> shutdownNow() { return List.of(); }

        @Override
        public boolean isShutdown() { return false; }

        @Override
        public boolean isTerminated() { return false; }

        @Override
        public boolean awaitTermination(long timeout, TimeUnit unit) { return true; }
    };
    private final LoadSpec spec;
    private final Settings s;
    private final String namesrv;
    private final RPCHook acl;  // null without ACL

    RocketMqRemotingEngine(LoadSpec spec) {
        this.spec = spec;
        ObjectNode d = Settings.object();
        d.put("queue_nums", 8);
        d.put("remoting_timeout_s", 3.0);
        d.put("send_retries", 0);
        d.put("consume_threads", 2);
        d.put("consume_batch_max_size", 32);
        d.put("pull_batch_size", 32);
        // Where the client runs its per-message work. By default rocketmq-client hands every
        // message through four threads: the caller to its async-send executor, to the Netty
        // worker group (encoder, decoder), to the I/O thread (the socket), and the response
        // back through the worker group to the callback executor. Each hand-off is a wake-up
        // that costs CPU at moderate rates, where nothing coalesces. Off, the encoder, decoder
        // and callbacks run on the I/O thread and an async send starts on the sender's thread.
        d.put("netty_worker_group", false);
        d.put("callback_executor", false);
        d.put("async_send_executor", false);
        s = new Settings(d, spec.driverSettings);
        namesrv = spec.endpoint("namesrv");
        if (namesrv.isEmpty()) throw new Unsupported("the RocketMQ endpoints have no namesrv");
        acl = Secrets.aclHook(spec);
    }

    @Override
    public void checkSendMode(String sendMode) {}

    final class RClient implements Client {
        final String instanceName = "bench-" + spec.workerId + "-" + ProcessHandle.current().pid() + "-" + CLIENTS.incrementAndGet();
        final DefaultMQProducer producer = new DefaultMQProducer("bench_producer", acl);
        final ConcurrentHashMap<String, GroupConsumer> groups = new ConcurrentHashMap<>();

        RClient() throws MQClientException {
            producer.setNamesrvAddr(namesrv);
            producer.setInstanceName(instanceName);
            producer.setVipChannelEnabled(false);
            producer.setSendMsgTimeout((int) (s.number("remoting_timeout_s") * 1000));
            producer.setRetryTimesWhenSendFailed(s.integer("send_retries"));
            producer.setRetryTimesWhenSendAsyncFailed(s.integer("send_retries"));
            producer.setCompressMsgBodyOverHowmuch(Integer.MAX_VALUE);
            if (!s.bool("async_send_executor")) producer.setAsyncSenderExecutor(CALLER);
            threading(producer);
            producer.start();
        }

        @Override
        public void close() {
            for (GroupConsumer g : groups.values()) g.consumer.shutdown();
            producer.shutdown();
        }
    }

    /**
     * Creates the client instance of {@code config}'s instanceName, so its Netty settings are in
     * place before its first connection; the producer or consumers starting on it find it.
     */
    private void threading(ClientConfig config) {
        MQClientInstance instance = MQClientManager.getInstance().getOrCreateMQClientInstance(config, acl);
        instance.getNettyClientConfig().setDisableNettyWorkerGroup(!s.bool("netty_worker_group"));
        instance.getNettyClientConfig().setDisableCallbackExecutor(!s.bool("callback_executor"));
    }

    @Override
    public Client newClient() throws Exception { return new RClient(); }

    @Override
    public Producer producer(String topic, Client client) throws Exception {
        DefaultMQProducer p = ((RClient) client).producer;
        p.fetchPublishMessageQueues(topic);  // the route (fails here when the topic does not exist)
        long timeout = p.getSendMsgTimeout();
        return new Producer() {
            @Override
            public void send(byte[] payload) throws Exception { p.send(new Message(topic, payload), timeout); }

            @Override
            public void sendAsync(byte[] payload, Done done) {
                try {
                    p.send(new Message(topic, payload), new SendCallback() {
                        @Override
                        public void onSuccess(SendResult result) { done.done(null); }

                        @Override
                        public void onException(Throwable e) { done.done(e); }
                    }, timeout);
                } catch (Throwable e) {
                    done.done(e);
                }
            }

            @Override
            public void sendOneway(byte[] payload) throws Exception { p.sendOneway(new Message(topic, payload)); }

            @Override
            public void close() {}  // the client's producer serves every topic; it goes with the client
        };
    }

    /** One push consumer of a group on one client; topics dispatch to their listeners. */
    final class GroupConsumer {
        final DefaultMQPushConsumer consumer;
        final ConcurrentHashMap<String, Listener> listeners = new ConcurrentHashMap<>();

        GroupConsumer(RClient client, String group) {
            consumer = acl == null ? new DefaultMQPushConsumer(group) : new DefaultMQPushConsumer(group, acl);
            consumer.setNamesrvAddr(namesrv);
            // Consumers of a client have their own connection and I/O thread: on the producer's,
            // pull results queued behind the send traffic of a closed loop.
            consumer.setInstanceName(client.instanceName + "-consumers");
            consumer.setVipChannelEnabled(false);
            consumer.setConsumeFromWhere(ConsumeFromWhere.CONSUME_FROM_LAST_OFFSET);
            consumer.setConsumeMessageBatchMaxSize(s.integer("consume_batch_max_size"));
            consumer.setPullBatchSize(s.integer("pull_batch_size"));
            consumer.setConsumeThreadMin(s.integer("consume_threads"));
            consumer.setConsumeThreadMax(s.integer("consume_threads"));
            // Topics are sharded over workers, so this worker owns every queue of its topics; the
            // subscription rides on each pull, so groups of other workers (other topics) do not
            // disturb the broker's view of this one.
            consumer.setAllocateMessageQueueStrategy(new AllocateMessageQueueStrategy() {
                @Override
                public List<MessageQueue> allocate(String g, String cid, List<MessageQueue> all, List<String> cids) { return all; }

                @Override
                public String getName() { return "ALL"; }
            });
            consumer.setPostSubscriptionWhenPull(true);
            threading(consumer);
            consumer.registerMessageListener((MessageListenerConcurrently) (msgs, ctx) -> {
                long now = Clock.wallNs();
                for (MessageExt m : msgs) {
                    Listener l = listeners.get(m.getTopic());
                    if (l != null) l.onMessage(m.getBody(), now);
                }
                return ConsumeConcurrentlyStatus.CONSUME_SUCCESS;
            });
        }
    }

    @Override
    public Consumer subscribe(String topic, String group, Listener listener, Client c) throws Exception {
        RClient client = (RClient) c;
        Offsets.startNewGroupAtEnd(client.producer, group, topic, (long) (s.number("remoting_timeout_s") * 1000));
        GroupConsumer g;
        boolean start;
        synchronized (client) {
            g = client.groups.get(group);
            start = g == null;
            if (start) {
                g = new GroupConsumer(client, group);
                client.groups.put(group, g);
            }
            g.listeners.put(topic, listener);
            g.consumer.subscribe(topic, "*");
            if (start) {
                g.consumer.start();
            } else {
                // A topic added to a running consumer: fetch its route now and rebalance, or it
                // would wait for the next periodic route update (30 s).
                MQClientInstance instance = g.consumer.getDefaultMQPushConsumerImpl().getmQClientFactory();
                instance.updateTopicRouteInfoFromNameServer(topic);
                instance.rebalanceImmediately();
            }
        }
        GroupConsumer mine = g;
        return new Consumer() {
            @Override
            public String topic() { return topic; }

            @Override
            public void close() {
                synchronized (client) {
                    mine.listeners.remove(topic);
                    if (mine.listeners.isEmpty() && client.groups.remove(group, mine)) mine.consumer.shutdown();
                    else mine.consumer.unsubscribe(topic);
                }
            }

            @Override
            public void unsubscribe() { close(); }  // remoting cannot delete a group; it stops consuming
        };
    }

    @Override
    public String classify(Throwable e) {
        for (Throwable t = e; t != null; t = t.getCause() == t ? null : t.getCause()) {
            if (t instanceof RemotingTimeoutException || t instanceof java.util.concurrent.TimeoutException) return "timeout";
            if (t instanceof RemotingConnectException || t instanceof RemotingSendRequestException || t instanceof java.net.ConnectException) {
                return "disconnected";
            }
            if (t instanceof RemotingTooMuchRequestException) return "client_error";
            if (t instanceof MQBrokerException) return "broker_error";
        }
        if (e instanceof MQClientException m) {
            String text = String.valueOf(m.getMessage());
            if (text.contains("No route info") || text.contains("not exist")) return "broker_error";
            return m.getResponseCode() > 0 ? "broker_error" : "client_error";
        }
        if (e instanceof Unsupported || e instanceof IllegalArgumentException || e instanceof IllegalStateException) return "client_error";
        return "other";
    }

    @Override
    public ObjectNode settings() {
        ObjectNode o = s.record("rocketmq", spec.path);
        o.put("namesrv", namesrv);
        o.put("client_version", MQVersion.getVersionDesc(MQVersion.CURRENT_VERSION));
        o.put("oneway", "remoting, straight to the broker");
        o.put("header_encoding", System.getProperty("rocketmq.serialize.type", "JSON"));
        o.put("consumer", "DefaultMQPushConsumer, every queue of the worker's topics");
        return o;
    }

    @Override
    public ObjectNode clientInfo() {
        ObjectNode o = Settings.object();
        o.put("name", "rocketmq-client");
        o.put("version", MQVersion.getVersionDesc(MQVersion.CURRENT_VERSION));
        return o;
    }

    @Override
    public void close() {}
}
