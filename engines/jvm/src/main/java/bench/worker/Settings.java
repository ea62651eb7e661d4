package bench.worker;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.JsonNodeFactory;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.util.Iterator;
import java.util.Map;

/** Driver settings: an engine's defaults overridden by the spec's (unknown keys are ignored). */
final class Settings {
    final ObjectNode values;

    Settings(ObjectNode defaults, ObjectNode given) {
        values = defaults.deepCopy();
        for (Iterator<Map.Entry<String, JsonNode>> it = given.fields(); it.hasNext(); ) {
            Map.Entry<String, JsonNode> e = it.next();
            if (values.has(e.getKey())) values.set(e.getKey(), e.getValue());
        }
    }

    static ObjectNode object() { return JsonNodeFactory.instance.objectNode(); }

    int integer(String key) { return values.path(key).asInt(); }

    long longValue(String key) { return values.path(key).asLong(); }

    double number(String key) { return values.path(key).asDouble(); }

    boolean bool(String key) { return values.path(key).asBoolean(); }

    String text(String key) { return values.path(key).asText(); }

    /** The record for ready.settings: driver, path, every setting, then extras. */
    ObjectNode record(String driver, String path) {
        ObjectNode o = object();
        o.put("driver", driver);
        o.put("path", path);
        o.setAll(values);
        return o;
    }
}
