package yarngateway.toree;

import java.io.IOException;
import java.net.ServerSocket;
import java.net.Socket;
import java.nio.charset.StandardCharsets;
import java.security.GeneralSecurityException;
import java.security.MessageDigest;
import java.util.Arrays;
import java.util.HashMap;
import java.util.HashSet;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.Map;
import java.util.Set;
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

    /**
     * Caps connections in total and per source address, as launcher_protocol.ConnectionLimiter does: at
     * a cap the oldest connection still reading its request (same source at the per-source cap, any
     * source at the total cap) is evicted, so a flood of idle or slow-dripping connections only evicts
     * itself and never locks out the gateway, which sends its request at once. {@link #admit} returns
     * null when the connection is refused (every slot it could take is past reading).
     */
    static final class Limiter {
        /** What {@link #admit} decided. */
        static final class Admission {
            final Socket evicted;

            Admission(Socket evicted) {
                this.evicted = evicted;
            }
        }

        private static final class Entry {
            final String source;
            boolean reading = true;

            Entry(String source) {
                this.source = source;
            }
        }

        private final int maxTotal;
        private final int maxPerSource;
        private final LinkedHashMap<Socket, Entry> conns = new LinkedHashMap<>();
        private final Map<String, Integer> perSource = new HashMap<>();

        Limiter(int maxTotal, int maxPerSource) {
            this.maxTotal = maxTotal;
            this.maxPerSource = maxPerSource;
        }

        synchronized Admission admit(String source, Socket conn) {
            Socket victim = null;
            if (perSource.getOrDefault(source, 0) >= maxPerSource) {
                victim = oldestReading(source);
                if (victim == null) {
                    return null;
                }
            } else if (conns.size() >= maxTotal) {
                victim = oldestReading(null);
                if (victim == null) {
                    return null;
                }
            }
            if (victim != null) {
                drop(victim);
            }
            conns.put(conn, new Entry(source));
            perSource.merge(source, 1, Integer::sum);
            return new Admission(victim);
        }

        /** The request is read: no longer evictable. False if it was evicted already (told "busy"). */
        synchronized boolean doneReading(Socket conn) {
            Entry e = conns.get(conn);
            if (e == null) {
                return false;
            }
            e.reading = false;
            return true;
        }

        synchronized boolean holds(Socket conn) {
            return conns.containsKey(conn);
        }

        synchronized boolean release(Socket conn) {
            return drop(conn);
        }

        synchronized int size() {
            return conns.size();
        }

        private Socket oldestReading(String source) {
            for (Map.Entry<Socket, Entry> e : conns.entrySet()) {
                if (e.getValue().reading && (source == null || source.equals(e.getValue().source))) {
                    return e.getKey();
                }
            }
            return null;
        }

        private boolean drop(Socket conn) {
            Entry e = conns.remove(conn);
            if (e == null) {
                return false;
            }
            int left = perSource.get(e.source) - 1;
            if (left <= 0) {
                perSource.remove(e.source);
            } else {
                perSource.put(e.source, left);
            }
            return true;
        }
    }

    /** Seconds a request has to arrive whole, counted from the connection (one deadline, not per read). */
    static final long REQUEST_TIMEOUT_MS = 5000;
    static final int MAX_HANDLERS = 16;
    static final int MAX_PER_SOURCE = 4;

    private final ServerSocket socket;
    private final Verifier verifier;
    private final Actions actions;
    private final Limiter limiter;
    private final long requestTimeoutMs;
    private volatile boolean stopped;

    public ControlServer(ServerSocket socket, Verifier verifier, Actions actions) {
        this(socket, verifier, actions, REQUEST_TIMEOUT_MS, MAX_HANDLERS, MAX_PER_SOURCE);
    }

    public ControlServer(ServerSocket socket, Verifier verifier, Actions actions, long requestTimeoutMs,
                         int maxHandlers, int maxPerSource) {
        this.socket = socket;
        this.verifier = verifier;
        this.actions = actions;
        this.requestTimeoutMs = requestTimeoutMs;
        this.limiter = new Limiter(maxHandlers, maxPerSource);
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
            Limiter.Admission admission = limiter.admit(conn.getInetAddress().getHostAddress(), conn);
            if (admission != null && admission.evicted != null) {
                // Its handler thread is blocked reading: closing the socket wakes it.
                answer(admission.evicted, "error", "busy: too many control connections");
                closeQuietly(admission.evicted);
            }
            if (admission == null) {
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
        long deadline = System.currentTimeMillis() + requestTimeoutMs;
        try {
            Map<String, Object> req;
            try {
                String line = Protocol.readLine(conn, Protocol.MAX_LINE, deadline);
                if (!limiter.doneReading(conn)) {
                    return; // evicted while its last bytes arrived: it was told "busy"
                }
                req = verifier.verify(Json.parse(line));
            } catch (Refused e) {
                log("control request rejected: " + e.getMessage());
                answer(conn, "error", e.getMessage());
                return;
            } catch (java.net.SocketTimeoutException e) {
                if (limiter.holds(conn)) {
                    log("control request incomplete after " + requestTimeoutMs + " ms; connection closed");
                }
                answer(conn, "error", "timeout: no complete request within " + requestTimeoutMs / 1000.0 + " s");
                return;
            } catch (IOException | IllegalArgumentException e) {
                if (limiter.holds(conn)) { // an evicted connection was told "busy" already
                    log("control request unreadable: " + e.getClass().getSimpleName());
                    answer(conn, "error", "bad_request: unreadable request");
                }
                return;
            } catch (RuntimeException | StackOverflowError e) { // a bug costs one answer, never the port
                log("control request failed: " + e.getClass().getSimpleName());
                answer(conn, "error", "internal_error: the launcher could not process it");
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
        } finally {
            limiter.release(conn);
            closeQuietly(conn);
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
