package bench.worker;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.JsonNodeFactory;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.OutputStream;
import java.io.IOException;
import java.nio.charset.StandardCharsets;

/** The Java side of docs/worker-protocol.md: one JSON object per line on the real stdout. */
final class Protocol {
    static final int VERSION = 1;
    static final ObjectMapper JSON = new ObjectMapper();

    private final OutputStream out;
    private volatile boolean exited;

    Protocol(OutputStream out) { this.out = out; }

    static ObjectNode event(String name) {
        ObjectNode o = JsonNodeFactory.instance.objectNode();
        o.put("event", name);
        return o;
    }

    /** Writes one event line; thread-safe; nothing goes out after the exit event. */
    synchronized void emit(ObjectNode event) {
        if (exited) return;
        try {
            byte[] line = JSON.writeValueAsString(event).getBytes(StandardCharsets.UTF_8);
            out.write(line);
            out.write('\n');
            out.flush();
        } catch (JsonProcessingException e) {
            throw new IllegalStateException(e);
        } catch (IOException e) {
            // The runner is gone; the stdin watcher ends the worker.
        }
        if ("exit".equals(event.path("event").asText())) exited = true;
    }

    void failed(String error, String trace) {
        ObjectNode e = event("failed");
        e.put("error", oneLine(error));
        e.put("trace", trace == null ? "" : trace);
        emit(e);
    }

    void exit(int code) {
        ObjectNode e = event("exit");
        e.put("code", code);
        emit(e);
    }

    static String oneLine(String s) {
        String t = s == null ? "" : s.replaceAll("\\s+", " ").trim();
        return t.isEmpty() ? "error" : t;
    }

    /** A throwable as one line: its class and message, with its root cause's when different. */
    static String describe(Throwable t) {
        Throwable root = t;
        while (root.getCause() != null && root.getCause() != root) root = root.getCause();
        String s = t.getClass().getSimpleName() + ": " + t.getMessage();
        if (root != t) s += " (cause: " + root.getClass().getSimpleName() + ": " + root.getMessage() + ")";
        return oneLine(s);
    }

    static String trace(Throwable t) {
        java.io.StringWriter w = new java.io.StringWriter();
        t.printStackTrace(new java.io.PrintWriter(w));
        return w.toString();
    }
}
