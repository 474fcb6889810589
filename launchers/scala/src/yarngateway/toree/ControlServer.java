package yarngateway.toree;

import java.io.IOException;
import java.net.ServerSocket;
import java.net.Socket;
import java.nio.charset.StandardCharsets;
import java.security.GeneralSecurityException;
import java.security.MessageDigest;
import java.util.Arrays;
import java.util.HashSet;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.Semaphore;
import java.util.function.LongSupplier;
import javax.crypto.Mac;
import javax.crypto.spec.SecretKeySpec;

/**
 * The launcher's control port (PROTOCOL.md, "The control port"): one JSON line per connection,
 * verified (MAC, kernel id, timestamp window, unseen nonce) and answered with one line; the
 * action runs after the answer is sent, since shutdown usually ends the process.
 */
public final class ControlServer {
    /** What the launcher does for verified requests. */
    public interface Actions {
        void onSignal(int signum);

        void onShutdown();
    }

    /** A refused request; {@code code} is one of launcher_protocol's E_* strings. */
    public static final class Refused extends Exception {
        private static final long serialVersionUID = 1L;
        public final String code;

        Refused(String code, String detail) {
            super(code + ": " + detail);
            this.code = code;
        }
    }

    /** Checks requests for one kernel, as launcher_protocol.ControlVerifier does, in the same order. */
    public static final class Verifier {
        private static final Set<String> REQUIRED =
                new HashSet<>(Arrays.asList("kernel_id", "request", "ts", "nonce", "mac"));
        private static final Set<String> ALLOWED =
                new HashSet<>(Arrays.asList("kernel_id", "request", "signum", "ts", "nonce", "mac"));
        private static final Set<String> REQUESTS = new HashSet<>(Arrays.asList("ping", "signal", "shutdown"));

        private final String kernelId;
        private final byte[] key;
        private final long windowSeconds;
        private final int cacheSize;
        private final LongSupplier clockSeconds;
        // Seen nonces, oldest first. Evicting is safe while fewer than cacheSize requests arrive within
        // one window: an evicted nonce is older than the window and fails the timestamp check anyway.
        private final LinkedHashSet<String> seen = new LinkedHashSet<>();

        public Verifier(String kernelId, String key, long windowSeconds, int cacheSize, LongSupplier clockSeconds) {
            this.kernelId = kernelId;
            this.key = key.getBytes(StandardCharsets.UTF_8);
            this.windowSeconds = windowSeconds;
            this.cacheSize = cacheSize;
            this.clockSeconds = clockSeconds;
        }

        public Verifier(String kernelId, String key) {
            this(kernelId, key, 60, 4096, () -> System.currentTimeMillis() / 1000);
        }

        /** HMAC-SHA256 (lower hex) of the canonical JSON of every field but {@code mac}. */
        public static String mac(Map<String, Object> fields, byte[] key) {
            Map<String, Object> copy = new LinkedHashMap<>(fields);
            copy.remove("mac");
            try {
                Mac m = Mac.getInstance("HmacSHA256");
                m.init(new SecretKeySpec(key, "HmacSHA256"));
                byte[] d = m.doFinal(Json.canonical(copy).getBytes(StandardCharsets.UTF_8));
                StringBuilder hex = new StringBuilder();
                for (byte b : d) {
                    hex.append(String.format("%02x", b & 0xff));
                }
                return hex.toString();
            } catch (GeneralSecurityException e) {
                throw new IllegalStateException("HmacSHA256 unavailable", e);
            }
        }

        private static boolean isInt(Object v) {
            return v instanceof Long;
        }

        public Map<String, Object> verify(Object parsed) throws Refused {
            if (!(parsed instanceof Map)) {
                throw new Refused("bad_request", "request is not a JSON object");
            }
            Map<String, Object> req = Protocol.asObject(parsed);
            if (!ALLOWED.containsAll(req.keySet()) || !req.keySet().containsAll(REQUIRED)) {
                throw new Refused("bad_request", "unexpected or missing fields");
            }
            Object mac = req.get("mac");
            byte[] expected = mac(req, key).getBytes(StandardCharsets.US_ASCII);
            if (!(mac instanceof String)
                    || !MessageDigest.isEqual(((String) mac).getBytes(StandardCharsets.UTF_8), expected)) {
                throw new Refused("bad_mac", "MAC does not verify");
            }
            if (!kernelId.equals(req.get("kernel_id"))) {
                throw new Refused("wrong_kernel", "request names another kernel");
            }
            Object ts = req.get("ts");
            if (!isInt(ts) || Math.abs(clockSeconds.getAsLong() - (Long) ts) > windowSeconds) {
                throw new Refused("stale_ts", "timestamp outside +/-" + windowSeconds + " s");
            }
            Object nonce = req.get("nonce");
            if (!(nonce instanceof String) || ((String) nonce).length() < 8 || ((String) nonce).length() > 128) {
                throw new Refused("bad_request", "bad nonce");
            }
            if (!REQUESTS.contains(req.get("request"))) {
                throw new Refused("bad_request", "unknown request");
            }
            Object signum = req.get("signum");
            if ("signal".equals(req.get("request"))
                    && (!isInt(signum) || (Long) signum < 1 || (Long) signum > 64)) {
                throw new Refused("bad_request", "signal needs an integer signum in 1..64");
            }
            synchronized (seen) {
                if (seen.contains(nonce)) {
                    throw new Refused("replayed_nonce", "nonce already used");
                }
                seen.add((String) nonce);
                Iterator<String> it = seen.iterator();
                while (seen.size() > cacheSize && it.hasNext()) {
                    it.next();
                    it.remove();
                }
            }
            return req;
        }

        /** Test hook: pretend these nonces were used. */
        void markSeen(String nonce) {
            synchronized (seen) {
                seen.add(nonce);
            }
        }
    }

    private final ServerSocket socket;
    private final Verifier verifier;
    private final Actions actions;
    private final Semaphore slots = new Semaphore(16);
    private volatile boolean stopped;

    public ControlServer(ServerSocket socket, Verifier verifier, Actions actions) {
        this.socket = socket;
        this.verifier = verifier;
        this.actions = actions;
    }

    public int port() {
        return socket.getLocalPort();
    }

    public void start() {
        Thread t = new Thread(this::acceptLoop, "launcher-control");
        t.setDaemon(true);
        t.start();
    }

    public void stop() {
        stopped = true;
        try {
            socket.close();
        } catch (IOException ignored) {
            // closing anyway
        }
    }

    private void acceptLoop() {
        while (!stopped) {
            Socket conn;
            try {
                conn = socket.accept();
            } catch (IOException e) {
                if (stopped) {
                    return;
                }
                Protocol.sleepQuietly(50);
                continue;
            }
            if (!slots.tryAcquire()) {
                answer(conn, "error", "busy: too many control connections");
                closeQuietly(conn);
                continue;
            }
            Thread h = new Thread(() -> handle(conn), "launcher-control-conn");
            h.setDaemon(true);
            h.start();
        }
    }

    private void handle(Socket conn) {
        Runnable action = null;
        String kind = "?";
        try {
            conn.setSoTimeout(5000);
            Map<String, Object> req;
            try {
                req = verifier.verify(Json.parse(Protocol.readLine(conn.getInputStream(), Protocol.MAX_LINE)));
            } catch (Refused e) {
                log("control request rejected: " + e.getMessage());
                answer(conn, "error", e.getMessage());
                return;
            } catch (IOException | IllegalArgumentException e) {
                log("control request unreadable: " + e.getClass().getSimpleName());
                answer(conn, "error", "bad_request: unreadable request");
                return;
            }
            kind = (String) req.get("request");
            if ("signal".equals(kind)) {
                int signum = ((Long) req.get("signum")).intValue();
                action = () -> actions.onSignal(signum);
            } else if ("shutdown".equals(kind)) {
                action = actions::onShutdown;
            }
            answer(conn, "ok", null);
        } catch (IOException e) {
            log("control connection failed: " + e.getClass().getSimpleName());
        } finally {
            closeQuietly(conn);
            slots.release();
        }
        if (action != null) {
            try {
                action.run();
            } catch (RuntimeException e) {
                log("control action " + kind + " failed: " + e);
            }
        }
    }

    private static void answer(Socket conn, String status, String reason) {
        Map<String, Object> a = new LinkedHashMap<>();
        a.put("status", status);
        if (reason != null) {
            a.put("reason", reason);
        }
        try {
            conn.getOutputStream().write((Json.canonical(a) + "\n").getBytes(StandardCharsets.UTF_8));
            conn.getOutputStream().flush();
        } catch (IOException ignored) {
            // the peer went away; nothing to tell it
        }
    }

    private static void closeQuietly(Socket s) {
        try {
            s.close();
        } catch (IOException ignored) {
            // already closed
        }
    }

    static void log(String msg) {
        System.err.println("[yarn-gateway toree launcher] " + msg);
    }
}
