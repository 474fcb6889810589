import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.util.LinkedHashMap;
import java.util.Map;
import yarngateway.toree.CurveProxy;
import yarngateway.toree.Protocol;

/**
 * Runs the Toree launcher's {@link CurveProxy} in front of plaintext sockets that a test binds on
 * loopback (tests/scala/test_curve_proxy.py), launcher jar and toree-assembly.jar only:
 *
 * <pre>
 *   CurveProxyProbe RANGE MAX_MSG_SIZE SHELL IOPUB STDIN CONTROL HB
 *       -> prints "PROXY {json: front ports, public key}" once forwarding, then "STOPPED n" (n = proxy
 *          threads still alive) when stdin ends; main then returns (no System.exit), so the JVM ends
 *          only if no thread of the proxy keeps it alive.
 * </pre>
 */
public final class CurveProxyProbe {
    private CurveProxyProbe() {
    }

    public static void main(String[] args) throws Exception {
        CurveProxy proxy = new CurveProxy("probe", "127.0.0.1", Protocol.parsePortRange(args[0]), Long.parseLong(args[1]));
        Map<String, Integer> back = new LinkedHashMap<>();
        for (int i = 0; i < CurveProxy.CHANNELS.length; i++) {
            back.put(CurveProxy.CHANNELS[i], Integer.parseInt(args[2 + i]));
        }
        proxy.start(back);
        StringBuilder out = new StringBuilder("{");
        for (Map.Entry<String, Long> e : proxy.frontPorts().entrySet()) {
            out.append('"').append(e.getKey()).append("\": ").append(e.getValue()).append(", ");
        }
        out.append("\"running\": ").append(proxy.running()).append(", \"public_key\": \"")
                .append(proxy.publicKey().replace("\\", "\\\\").replace("\"", "\\\"")).append("\"}");
        System.out.println("PROXY " + out);
        System.out.flush();
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        while (in.readLine() != null) {
            // until the test closes stdin
        }
        proxy.close();
        int alive = 0;
        for (Thread t : Thread.getAllStackTraces().keySet()) {
            if (t.isAlive() && t.getName().startsWith("curve-proxy-")) {
                alive++;
            }
        }
        System.out.println("STOPPED " + alive);
        System.out.flush();
    }
}
