"""drivers/rocketmq."""
