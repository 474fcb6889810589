package yarngateway.toree;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.security.SecureRandom;
import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.zeromq.ZMQ;
import org.zeromq.ZMQException;

/**
 * The CurveZMQ front of a kernel that binds plaintext ZMQ sockets on loopback (launcher protocol
 * v2, "Launcher behaviour with curve"): five CurveZMQ SERVER sockets bound on {@code ip} at random
 * ports of the port range, each forwarding to one of the kernel's loopback sockets.
 *
 * <ul>
 *   <li>shell, control, stdin, hb: front ROUTER &lt;-&gt; back DEALER, frames forwarded unchanged (the
 *       ROUTER adds and strips the client's routing id). The back DEALERs of shell and stdin share the
 *       identity {@link #BACK_IDENTITY}: the kernel addresses stdin's {@code input_request} to the
 *       identities of the shell request.
 *   <li>iopub: front XPUB &lt;-&gt; back XSUB (subscriptions up, messages down).
 *   <li>front sockets: ZMQ_MAXMSGSIZE (a larger message drops that peer), SNDHWM/RCVHWM 1000, LINGER 0,
 *       HANDSHAKE_IVL 10 s; back sockets LINGER 0.
 * </ul>
 *
 * The key pair is made here with JeroMQ's generator and kept in memory only; only the public half
 * leaves this class. One daemon thread per channel runs {@link ZMQ#proxy}; {@link #close} ends them
 * by terminating the proxy's own context. Nothing here logs message contents.
 *
 * <p>Two steps: the constructor binds the front sockets (so their ports are known for the launch
 * response and nobody can take them); {@link #start} connects the back sockets and starts forwarding,
 * once the kernel listens on its loopback ports. Connecting earlier would make the back sockets retry
 * against ports nobody listens on yet, and a retry from an ephemeral port equal to the target port
 * connects the socket to itself (TCP simultaneous open) and takes the port from the kernel.
 */
public final class CurveProxy implements AutoCloseable {
    /** The five channels, in {@link ToreeLauncher#PORT_NAMES} order. */
    public static final String[] CHANNELS = {"shell", "iopub", "stdin", "control", "hb"};
    public static final long DEFAULT_MAX_MSG_SIZE = 256L * 1024 * 1024;
    public static final int HWM = 1000;
    public static final int HANDSHAKE_IVL_MS = 10_000;
    /** The ZMQ identity of the shell and stdin back sockets. */
    public static final byte[] BACK_IDENTITY = "yg-proxy".getBytes(StandardCharsets.US_ASCII);
    static final long STOP_WAIT_MS = 5_000;

    private static final SecureRandom RANDOM = new SecureRandom();

    private final ZMQ.Context ctx;
    private final String publicKey;
    private final Map<String, ZMQ.Socket> fronts = new LinkedHashMap<>();
    private final Map<String, Long> frontPorts = new LinkedHashMap<>();
    private final List<Thread> threads = new ArrayList<>();
    private final String label;
    private volatile boolean closing;
    private boolean started;

    /** Whether this JeroMQ can do CURVE (its key generator works). */
    public static boolean available() {
        try {
            ZMQ.Curve.generateKeyPair();
            return true;
        } catch (LinkageError | RuntimeException e) {
            return false;
        }
    }

    /**
     * Make a key pair and bind the five front sockets on {@code ip} at random free ports of
     * {@code range} ({@code 0..0}: any port), skipping ports already in use.
     *
     * @param label names the kernel in log lines
     */
    public CurveProxy(String label, String ip, int[] range, long maxMsgSize) throws IOException {
        this.label = label;
        ZMQ.Curve.KeyPair pair = ZMQ.Curve.generateKeyPair();
        publicKey = pair.publicKey;
        ctx = ZMQ.context(1);
        boolean ok = false;
        try {
            boolean ipv6 = ip.indexOf(':') >= 0;
            String host = ipv6 ? "[" + ip + "]" : ip;
            List<Integer> candidates = candidates(range);
            for (String ch : CHANNELS) {
                ZMQ.Socket s = ctx.socket(ch.equals("iopub") ? ZMQ.XPUB : ZMQ.ROUTER);
                fronts.put(ch, s);  // closed with the context on failure
                s.setLinger(0);
                s.setSndHWM(HWM);
                s.setRcvHWM(HWM);
                s.setMaxMsgSize(maxMsgSize);
                s.setHandshakeIvl(HANDSHAKE_IVL_MS);
                s.setIPv6(ipv6);
                s.setCurveServer(true);
                // Fresh arrays each: JeroMQ keeps the array it is given (zeroing one would change the key).
                s.setCurveSecretKey(ZMQ.Curve.z85Decode(pair.secretKey));
                s.setCurvePublicKey(ZMQ.Curve.z85Decode(pair.publicKey));
                frontPorts.put(ch, (long) bindInRange(s, host, candidates, range));
            }
            ok = true;
        } finally {
            if (!ok) {
                closeNow();
            }
        }
    }

    private static List<Integer> candidates(int[] range) {
        List<Integer> c = new ArrayList<>();
        if (range[0] == 0 && range[1] == 0) {
            return c;
        }
        for (int p = range[0]; p <= range[1]; p++) {
            c.add(p);
        }
        Collections.shuffle(c, RANDOM);
        return c;
    }

    /** Bind {@code s} at the next free candidate port (each candidate is tried once), or any port for 0..0. */
    private static int bindInRange(ZMQ.Socket s, String host, List<Integer> candidates, int[] range) throws IOException {
        if (range[0] == 0 && range[1] == 0) {
            String endpoint = "tcp://" + host + ":*";
            if (!s.bind(endpoint)) {
                throw new IOException("could not bind a CurveZMQ socket on " + host);
            }
            String last = s.getLastEndpoint();
            return Integer.parseInt(last.substring(last.lastIndexOf(':') + 1));
        }
        while (!candidates.isEmpty()) {
            int port = candidates.remove(candidates.size() - 1);
            try {
                if (s.bind("tcp://" + host + ":" + port)) {
                    return port;
                }
            } catch (ZMQException e) {
                // in use (or not bindable): try the next port
            }
        }
        throw new IOException("no free port left in range " + range[0] + ".." + range[1] + " on " + host
                + " for the kernel's CurveZMQ sockets");
    }

    /** The Z85 text of the public key (40 characters). */
    public String publicKey() {
        return publicKey;
    }

    /** Channel ({@link #CHANNELS}) -> front port. */
    public Map<String, Long> frontPorts() {
        return Collections.unmodifiableMap(frontPorts);
    }

    /**
     * Connect the back sockets to the kernel's loopback ports (channel -> port) and start forwarding.
     * Call once, after the kernel listens on those ports.
     */
    public synchronized void start(Map<String, Integer> kernelPorts) {
        if (started || closing) {
            throw new IllegalStateException(closing ? "proxy is closed" : "proxy already started");
        }
        started = true;
        for (String ch : CHANNELS) {
            Integer port = kernelPorts.get(ch);
            if (port == null) {
                throw new IllegalArgumentException("no kernel port for " + ch);
            }
            ZMQ.Socket back = ctx.socket(ch.equals("iopub") ? ZMQ.XSUB : ZMQ.DEALER);
            back.setLinger(0);
            if (ch.equals("shell") || ch.equals("stdin")) {
                back.setIdentity(BACK_IDENTITY);
            }
            back.connect("tcp://127.0.0.1:" + port);
            ZMQ.Socket front = fronts.get(ch);
            Thread t = new Thread(() -> forward(ch, front, back), "curve-proxy-" + ch);
            t.setDaemon(true);  // never keeps the JVM alive
            threads.add(t);
        }
        for (Thread t : threads) {
            t.start();
        }
    }

    private void forward(String ch, ZMQ.Socket front, ZMQ.Socket back) {
        try {
            ZMQ.proxy(front, back, null);
        } catch (RuntimeException e) {
            if (!closing) {
                ToreeLauncher.log(label + ": CurveZMQ proxy for " + ch + " stopped (" + e.getClass().getSimpleName() + ")");
            }
        } finally {
            closeQuietly(back);
            closeQuietly(front);
        }
        if (!closing) {
            ToreeLauncher.log(label + ": CurveZMQ proxy for " + ch + " ended");
        }
    }

    private static void closeQuietly(ZMQ.Socket s) {
        try {
            s.close();
        } catch (RuntimeException ignored) {
            // already closed by the context's termination
        }
    }

    /** Whether every forwarding thread is alive (false before {@link #start} and after {@link #close}). */
    public boolean running() {
        if (threads.isEmpty()) {
            return false;
        }
        for (Thread t : threads) {
            if (!t.isAlive()) {
                return false;
            }
        }
        return true;
    }

    /**
     * Stop forwarding and release every socket: terminating the context wakes the threads in
     * {@link ZMQ#proxy}, which close their sockets. Waits at most {@link #STOP_WAIT_MS}.
     */
    @Override
    public synchronized void close() {
        if (closing) {
            return;
        }
        closing = true;
        if (!started) {
            closeNow();
            return;
        }
        Thread term = new Thread(ctx::term, "curve-proxy-stop");
        term.setDaemon(true);
        term.start();
        try {
            term.join(STOP_WAIT_MS);
            for (Thread t : threads) {
                t.join(Math.max(1, STOP_WAIT_MS / 5));
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    private void closeNow() {
        for (ZMQ.Socket s : fronts.values()) {
            closeQuietly(s);
        }
        ctx.term();
    }
}
