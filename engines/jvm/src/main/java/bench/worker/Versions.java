package bench.worker;

import java.io.InputStream;
import java.util.Properties;

/** A library's version from the pom.properties Maven puts in its jar. */
final class Versions {
    private Versions() {}

    static String of(String groupId, String artifactId) {
        String path = "/META-INF/maven/" + groupId + "/" + artifactId + "/pom.properties";
        try (InputStream in = Versions.class.getResourceAsStream(path)) {
            if (in == null) return "unknown";
            Properties p = new Properties();
            p.load(in);
            return p.getProperty("version", "unknown");
        } catch (Exception e) {
            return "unknown";
        }
    }
}
