import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.net.ServerSocket;
import java.nio.charset.StandardCharsets;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import yarngateway.toree.ControlServer;
import yarngateway.toree.Protocol;

/**
 * Drives the Toree launcher's protocol classes from tests (tests/scala/test_scala_protocol_flood.py),
 * JDK and launcher jar only:
 *
 * <pre>
 *   send ADDRESS KERNEL_ID PUBLIC_KEY_B64 TOKEN TIMEOUT_MS   (the launch token on stdin in real use; argv here)
 *       -> prints OK, or REJECTED reason / FAILED message, and exits 0 / 1
 *   control KERNEL_ID KEY
 *       -> prints "PORT n", then "SIGNAL n" per verified signal request; ends at stdin EOF
 * </pre>
 */
public final class ProtocolProbe {
    private ProtocolProbe() {
    }

    public static void main(String[] args) throws Exception {
        if (args[0].equals("send")) {
            Map<String, Object> ci = new LinkedHashMap<>();
            ci.put("ip", "127.0.0.1");
            ci.put("transport", "tcp");
            ci.put("signature_scheme", "hmac-sha256");
            ci.put("key", "k".repeat(64));
            long port = 50001;
            for (String name : new String[] {"shell_port", "iopub_port", "stdin_port", "control_port", "hb_port"}) {
                ci.put(name, port++);
            }
            ci.put("kernel_name", "spark_scala");
            Map<String, Object> plain = new LinkedHashMap<>();
            plain.put("launch_token", args[4]);
            plain.put("connection_info", ci);
            plain.put("control_port", 50006L);
            plain.put("pid", 4242L);
            plain.put("hostname", "probe");
            byte[] frame = Protocol.encryptResponse(args[2], plain, Protocol.loadPublicKey(args[3]));
            try {
                Protocol.sendResponse(args[1], frame, Long.parseLong(args[5]));
                System.out.println("OK");
            } catch (Protocol.Rejected e) {
                System.out.println("REJECTED " + e.reason);
                System.exit(1);
            } catch (java.io.IOException e) {
                System.out.println("FAILED " + e.getMessage());
                System.exit(1);
            }
            return;
        }
        List<ServerSocket> socks = Protocol.bindInRange(1, new int[] {0, 0}, "127.0.0.1");
        ControlServer server = new ControlServer(socks.get(0), new ControlServer.Verifier(args[1], args[2]),
                new ControlServer.Actions() {
                    @Override
                    public void onSignal(int signum) {
                        System.out.println("SIGNAL " + signum);
                        System.out.flush();
                    }

                    @Override
                    public void onShutdown() {
                        System.out.println("SHUTDOWN");
                        System.out.flush();
                    }
                });
        server.start();
        System.out.println("PORT " + server.port());
        System.out.flush();
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        while (in.readLine() != null) {
            // until the test closes stdin
        }
        server.stop();
    }
}
