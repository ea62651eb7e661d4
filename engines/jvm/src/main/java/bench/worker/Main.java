package bench.worker;

import com.fasterxml.jackson.databind.JsonNode;
import java.io.BufferedOutputStream;
import java.io.BufferedReader;
import java.io.FileDescriptor;
import java.io.FileOutputStream;
import java.io.InputStreamReader;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.LinkedBlockingQueue;

/**
 * The JVM worker's entry point: docs/worker-protocol.md over stdin (commands) and stdout (events).
 * The real stdout is kept for protocol lines only; System.out is pointed at stderr before any
 * client library loads, and every library logs to stderr at WARN.
 */
public final class Main {
    private static final long EOF_GRACE_MS = 10_000, DEADLINE_GRACE_NS = 20_000_000_000L;

    private Main() {}

    public static void main(String[] args) throws Exception {
        Protocol protocol = new Protocol(new BufferedOutputStream(new FileOutputStream(FileDescriptor.out), 1 << 16));
        System.setOut(new PrintStream(new FileOutputStream(FileDescriptor.err), true, StandardCharsets.UTF_8));
        clientProperties();
        BlockingQueue<String> commands = new LinkedBlockingQueue<>();
        Thread reader = new Thread(() -> readStdin(commands), "stdin");
        reader.setDaemon(true);
        reader.start();
        int code;
        try {
            code = serve(protocol, commands);
        } catch (Throwable e) {
            protocol.failed(Protocol.describe(e), Protocol.trace(e));
            code = 1;
        }
        protocol.exit(code);
        System.err.flush();
        Runtime.getRuntime().halt(code);  // client libraries leave non-daemon threads behind
    }

    private static int serve(Protocol protocol, BlockingQueue<String> commands) throws InterruptedException {
        while (true) {
            String line = commands.take();
            if (line.equals(Worker.EOF)) return 2;
            JsonNode cmd;
            try {
                cmd = Protocol.JSON.readTree(line);
            } catch (Exception e) {
                protocol.failed("not a JSON line: " + line.substring(0, Math.min(80, line.length())), "");
                continue;
            }
            String name = cmd == null ? "" : cmd.path("cmd").asText();
            if (name.equals("stop")) return 2;
            if (!name.equals("setup")) {
                protocol.failed("expected setup first, not '" + name + "'", "");
                continue;
            }
            if (cmd.path("protocol").asInt(Protocol.VERSION) != Protocol.VERSION) {
                protocol.failed("protocol " + cmd.path("protocol") + " is not supported (this worker speaks " + Protocol.VERSION + ")", "");
                return 1;
            }
            LoadSpec spec;
            try {
                spec = new LoadSpec(cmd.get("spec"));
            } catch (LoadSpec.SpecError e) {
                protocol.failed(e.getMessage(), "");
                return 1;
            }
            Worker worker = new Worker(spec, protocol, commands);
            startWatchdog(protocol, worker.hardDeadlineNs + DEADLINE_GRACE_NS);
            return worker.run();
        }
    }

    /** Past the deadline (plus grace) the process ends, even if a client library hangs. */
    private static void startWatchdog(Protocol protocol, long haltAtNs) {
        Thread t = new Thread(() -> {
            while (System.nanoTime() < haltAtNs) {
                try {
                    Thread.sleep(250);
                } catch (InterruptedException e) {
                    return;
                }
            }
            protocol.failed("past its deadline: exiting", "");
            protocol.exit(3);
            Runtime.getRuntime().halt(3);
        }, "watchdog");
        t.setDaemon(true);
        t.start();
    }

    private static void readStdin(BlockingQueue<String> commands) {
        try (BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8))) {
            String line;
            while ((line = in.readLine()) != null) {
                if (!line.isBlank()) commands.add(line);
            }
        } catch (Exception e) {
            System.err.println("stdin: " + e);
        }
        commands.add(Worker.EOF);
        // The runner is gone: the worker stops its load now and must be gone within seconds.
        try {
            Thread.sleep(EOF_GRACE_MS);
        } catch (InterruptedException e) {
            return;
        }
        Runtime.getRuntime().halt(2);
    }

    /** Client libraries: logs to stderr at WARN, binary remoting headers, prompt rebalances. */
    private static void clientProperties() {
        System.setProperty("org.slf4j.simpleLogger.logFile", "System.err");
        System.setProperty("org.slf4j.simpleLogger.defaultLogLevel", "warn");
        System.setProperty("org.slf4j.simpleLogger.showDateTime", "true");
        // rocketmq-client (remoting) and rocketmq-client-java ship shaded logbacks: our configs
        // send them to stderr at WARN (and write no log files under ~/logs).
        System.setProperty("rmq.logback.configurationFile", "rmq.logback-test.xml");
        System.setProperty("rocketmq.logback.configurationFile", "rocketmq.logback-test.xml");
        System.setProperty("rocketmq.log.level", "warn");
        System.setProperty("mq.consoleAppender.enabled", "false");
        System.setProperty("rocketmq.client.logUseSlf4j", "false");
        // Remoting headers in RocketMQ's binary encoding rather than JSON (less CPU per send).
        if (System.getProperty("rocketmq.serialize.type") == null) System.setProperty("rocketmq.serialize.type", "ROCKETMQ");
        // A push consumer's first rebalance fails when its heartbeat has not reached the broker
        // yet (several consumers starting on one client instance skip each other's heartbeat);
        // the next one comes after waitInterval, 20 s by default, so a consumer of a short step
        // could receive nothing at all. 2 s bounds that wait; a rebalance of a few queues is cheap.
        if (System.getProperty("rocketmq.client.rebalance.waitInterval") == null) {
            System.setProperty("rocketmq.client.rebalance.waitInterval", "2000");
        }
    }
}
