package bench.worker;

import java.util.Set;
import org.apache.rocketmq.client.exception.MQBrokerException;
import org.apache.rocketmq.client.impl.MQClientAPIImpl;
import org.apache.rocketmq.client.impl.factory.MQClientInstance;
import org.apache.rocketmq.client.producer.DefaultMQProducer;
import org.apache.rocketmq.common.message.MessageQueue;
import org.apache.rocketmq.remoting.protocol.ResponseCode;
import org.apache.rocketmq.remoting.protocol.header.QueryConsumerOffsetRequestHeader;
import org.apache.rocketmq.remoting.protocol.header.UpdateConsumerOffsetRequestHeader;
import org.apache.rocketmq.remoting.protocol.subscription.SubscriptionGroupConfig;

/**
 * A new consumer group starts at the end of its queues. CONSUME_FROM_LAST_OFFSET alone does not
 * do it: a broker answers offset 0 for a group it has no offset of while the queue's first
 * message is still in memory (a young topic), and the group would read the topic from its start.
 * So before the consumer starts, every queue without an offset of this group gets the queue's
 * max offset committed; a group that has offsets keeps them.
 */
final class Offsets {
    private Offsets() {}

    static void startNewGroupAtEnd(DefaultMQProducer started, String group, String topic, long timeoutMs) throws Exception {
        MQClientInstance instance = started.getDefaultMQProducerImpl().getMqClientFactory();
        instance.updateTopicRouteInfoFromNameServer(topic);
        MQClientAPIImpl api = instance.getMQClientAPIImpl();
        Set<MessageQueue> queues = instance.getMQAdminImpl().fetchSubscribeMessageQueues(topic);
        for (MessageQueue mq : queues) {
            String addr = instance.findBrokerAddressInPublish(mq.getBrokerName());
            if (addr == null) throw new IllegalStateException("no master address for broker " + mq.getBrokerName() + " of " + topic);
            QueryConsumerOffsetRequestHeader q = new QueryConsumerOffsetRequestHeader();
            q.setConsumerGroup(group);
            q.setTopic(topic);
            q.setQueueId(mq.getQueueId());
            q.setSetZeroIfNotFound(false);
            try {
                api.queryConsumerOffset(addr, q, timeoutMs);
                continue;  // the group has an offset here: it resumes from it
            } catch (MQBrokerException e) {
                int code = e.getResponseCode();
                if (code != ResponseCode.QUERY_NOT_FOUND && code != ResponseCode.SUBSCRIPTION_GROUP_NOT_EXIST) throw e;
            }
            long max = api.getMaxOffset(addr, mq, timeoutMs);
            UpdateConsumerOffsetRequestHeader u = new UpdateConsumerOffsetRequestHeader();
            u.setConsumerGroup(group);
            u.setTopic(topic);
            u.setQueueId(mq.getQueueId());
            u.setCommitOffset(max);
            try {
                api.updateConsumerOffset(addr, u, timeoutMs);
            } catch (MQBrokerException e) {
                if (e.getResponseCode() != ResponseCode.SUBSCRIPTION_GROUP_NOT_EXIST) throw e;
                // A brand-new group: the broker takes offsets only of a group it knows (a
                // consumer's first heartbeat would create it the same way).
                SubscriptionGroupConfig config = new SubscriptionGroupConfig();
                config.setGroupName(group);
                api.createSubscriptionGroup(addr, config, timeoutMs);
                api.updateConsumerOffset(addr, u, timeoutMs);
            }
        }
    }
}
