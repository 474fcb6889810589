import java.io.FileInputStream;
import java.io.InputStreamReader;
import java.io.Reader;
import java.nio.charset.StandardCharsets;
import java.util.Properties;

/**
 * Reads a .properties file the way spark-submit does and prints "key-hex value-hex" per property
 * (UTF-8 bytes in hex, so no console encoding can blur the result). With "spark" as the first
 * argument it uses Spark's own org.apache.spark.util.Utils.getPropertiesFromFile (Spark's jars on
 * the classpath); otherwise java.util.Properties.load over a UTF-8 reader, which is what that
 * method does. Used by tests/launcher/test_properties_java.py.
 */
public final class PropertiesProbe {
    private PropertiesProbe() {
    }

    private static String hex(String s) {
        StringBuilder out = new StringBuilder();
        for (byte b : s.getBytes(StandardCharsets.UTF_8)) {
            out.append(String.format("%02x", b & 0xff));
        }
        return out.length() == 0 ? "-" : out.toString();
    }

    public static void main(String[] args) throws Exception {
        String path = args[1];
        Properties props = new Properties();
        try (Reader in = new InputStreamReader(new FileInputStream(path), StandardCharsets.UTF_8)) {
            props.load(in);
        }
        if (args[0].equals("spark")) {
            // Reflection, so that the plain mode compiles and runs without Spark's jars.
            Object map = Class.forName("org.apache.spark.util.Utils")
                    .getMethod("getPropertiesFromFile", String.class).invoke(null, path);
            java.lang.reflect.Method apply = map.getClass().getMethod("apply", Object.class);
            int size = (Integer) map.getClass().getMethod("size").invoke(map);
            if (size != props.size()) {
                throw new IllegalStateException("Spark read " + size + " properties, Properties.load " + props.size());
            }
            for (String k : props.stringPropertyNames()) {
                System.out.println(hex(k) + " " + hex((String) apply.invoke(map, k)));
            }
            return;
        }
        for (String k : props.stringPropertyNames()) {
            System.out.println(hex(k) + " " + hex(props.getProperty(k)));
        }
    }
}
