package yarngateway.toree;

import java.io.IOException;
import java.lang.reflect.Field;
import java.lang.reflect.Method;
import java.net.DatagramSocket;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.nio.file.attribute.PosixFilePermissions;
import java.security.PublicKey;
import java.util.HashMap;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * Scala kernel launcher for YARN cluster mode (launcher protocol, version 2): the driver's main
 * class under {@code spark-submit --class}. Steps:
 *
 * <ol>
 *   <li>parse the protocol arguments; take {@code KERNEL_LAUNCH_TOKEN} out of the JVM's
 *       environment and Spark's properties (it is never logged nor written to disk);
 *   <li>bind the control port, which this launcher serves itself, at a random port of
 *       {@code --port-range}, and choose Toree's five ZMQ ports: with {@code --transport-encryption
 *       curve} (the default) any free ports on 127.0.0.1, behind a {@link CurveProxy} whose five
 *       CurveZMQ server sockets are bound in the range on the reachable address; with {@code none}
 *       five ports of the range on that address, as in version 1;
 *   <li>write Toree's connection profile (it holds the kernel key, so: a 0600 file in a 0700
 *       directory, deleted as soon as Toree has bound its sockets), hand the five kernel ports
 *       over to Toree (see {@link #handOver}) and run {@code org.apache.toree.Main} in this
 *       thread;
 *   <li>once the five ports are listened on by this process (on loopback, with curve: then the
 *       proxy starts forwarding; {@code eager}: and Toree has created the SparkSession): send the
 *       encrypted response, whose connection info names the network-facing ports (the proxy's, with
 *       curve, and its {@code curve_publickey}); {@code lazy}: start the SparkSession in the
 *       background (the YARN AM must see a SparkContext within spark.yarn.am.waitTime, and Toree's
 *       {@code sc} then finds it).
 * </ol>
 *
 * The CurveZMQ key pair is made by JeroMQ in this JVM and lives in the proxy's memory only: never
 * logged, never in the profile, argv or the environment; the response carries the public half.
 *
 * The SparkContext is never created before Toree has set {@code spark.repl.class.outputDir}:
 * a context created earlier has no REPL class server, and closures defined in cells then fail
 * on executors (ClassCastException: SerializedLambda).
 *
 * Control requests: {@code signal} 2 raises SIGINT inside this JVM (Toree 0.5 interrupts the
 * running cell on SIGINT) and cancels all Spark jobs; {@code shutdown} stops Spark and exits 0;
 * {@code ping} only answers.
 *
 * <p>Exits: YARN's ApplicationMaster says SUCCEEDED only for a driver whose main returned, and FAILED
 * for any {@code System.exit} before that. So main returns rather than exit 0, and an exit with status
 * 0 from elsewhere (Toree's answer to a Jupyter {@code shutdown_request}, the {@code shutdown} request
 * above) waits in a Spark shutdown hook until Toree has stopped and main has returned
 * ({@link SparkHooks#reportCleanExitAsSuccess}, {@link ExitWatch}).
 */
public final class ToreeLauncher {
    static final String TOKEN_ENV = "KERNEL_LAUNCH_TOKEN";
    static final String[] PORT_NAMES = {"shell_port", "iopub_port", "stdin_port", "control_port", "hb_port"};
    static final String CURVE_PUBLIC_FIELD = "curve_publickey";
    /** Where a kernel behind the CurveZMQ proxy binds its plaintext sockets. */
    static final String LOOPBACK = "127.0.0.1";
    /** Toree shuts the kernel down on a second SIGINT within 3 s; never raise two that close. */
    static final long SIGINT_SPACING_MS = 3500;
    /** How long a clean exit waits for the kernel to stop so that YARN says SUCCEEDED (Hadoop allows 30 s). */
    static final long CLEAN_EXIT_WAIT_MS = 15_000;

    private volatile long lastSigint;

    private ToreeLauncher() {
    }

    public static void main(String[] argv) {
        int code;
        try {
            code = new ToreeLauncher().run(argv);
        } catch (Throwable t) {
            log("launcher failed: " + t);
            code = 1;
        }
        if (code == 0 && inYarnApplicationMaster()) {
            // Return, never System.exit(0): the ApplicationMaster reports SUCCEEDED only for a main that
            // returned (an exit before that is FAILED), then ends the JVM itself.
            return;
        }
        exit(code);
    }

    /** Whether this JVM is the driver in YARN cluster mode (the ApplicationMaster runs main). */
    static boolean inYarnApplicationMaster() {
        return "cluster".equals(System.getProperty("spark.submit.deployMode"))
                && System.getProperty("spark.yarn.app.id") != null;
    }

    static void log(String msg) {
        ControlServer.log(msg);
    }

    private static Map<String, String> parseArgs(String[] argv) {
        Map<String, String> a = new HashMap<>();
        a.put("--port-range", "0..0");
        a.put("--spark-context-initialization-mode", "none");
        a.put("--transport-encryption", "curve");
        Set<String> known = new HashSet<>(java.util.Arrays.asList("--kernel-id", "--response-address", "--public-key",
                "--port-range", "--spark-context-initialization-mode", "--transport-encryption"));
        for (int i = 0; i < argv.length; i++) {
            String opt = argv[i];
            String value;
            int eq = opt.indexOf('=');
            if (opt.startsWith("--") && eq > 0) {
                value = opt.substring(eq + 1);
                opt = opt.substring(0, eq);
            } else if (i + 1 < argv.length) {
                value = argv[++i];
            } else {
                throw new IllegalArgumentException(opt + " needs a value");
            }
            if (!known.contains(opt)) {
                throw new IllegalArgumentException("unknown option " + opt);
            }
            a.put(opt, value);
        }
        for (String req : new String[] {"--kernel-id", "--response-address", "--public-key"}) {
            if (!a.containsKey(req)) {
                throw new IllegalArgumentException(req + " is required");
            }
        }
        String mode = a.get("--spark-context-initialization-mode");
        if (!mode.equals("lazy") && !mode.equals("eager") && !mode.equals("none")) {
            throw new IllegalArgumentException("--spark-context-initialization-mode must be lazy, eager or none");
        }
        String enc = a.get("--transport-encryption");
        if (!enc.equals("curve") && !enc.equals("none")) {
            throw new IllegalArgumentException("--transport-encryption must be curve or none");
        }
        return a;
    }

    private int run(String[] argv) throws Exception {
        Map<String, String> args = parseArgs(argv);
        String kernelId = args.get("--kernel-id");
        String mode = args.get("--spark-context-initialization-mode");
        String token = takeToken();
        if (token == null || token.isEmpty()) {
            log(TOKEN_ENV + " is not set; the gateway must provide it");
            return 2;
        }
        if (inYarnApplicationMaster()) {
            SparkHooks.reportCleanExitAsSuccess(Thread.currentThread(), CLEAN_EXIT_WAIT_MS);
        }
        PublicKey publicKey = Protocol.loadPublicKey(args.get("--public-key"));
        String responseAddress = args.get("--response-address");
        String ip = reachableIp(responseAddress);
        int[] range = Protocol.parsePortRange(args.get("--port-range"));
        boolean curve = args.get("--transport-encryption").equals("curve");
        if (curve && !CurveProxy.available()) {
            log("kernel " + kernelId + ": WARNING: this JeroMQ has no CURVE support: the kernel's ports will not be "
                    + "encrypted");
            curve = false;
        }
        // Control port first (in the range), then Toree's five: on loopback behind the proxy, else in the range.
        ServerSocket controlSocket = Protocol.bindInRange(1, range, ip).get(0);
        String kernelIp = curve ? LOOPBACK : ip;
        List<ServerSocket> socks;
        CurveProxy proxy = null;
        try {
            socks = Protocol.bindInRange(PORT_NAMES.length, curve ? new int[] {0, 0} : range, kernelIp);
            if (curve) {
                proxy = new CurveProxy("kernel " + kernelId, ip, range, CurveProxy.DEFAULT_MAX_MSG_SIZE);
            }
        } catch (IOException | RuntimeException e) {
            controlSocket.close();
            throw e;
        }
        Map<String, Object> ports = new LinkedHashMap<>();
        for (int i = 0; i < PORT_NAMES.length; i++) {
            ports.put(PORT_NAMES[i], (long) socks.get(i).getLocalPort());
        }
        String key = hex(Protocol.randomBytes(32));
        ControlServer control = new ControlServer(controlSocket,
                new ControlServer.Verifier(kernelId, key), new Actions(kernelId));
        control.start();
        Map<String, Object> published = new LinkedHashMap<>();
        for (int i = 0; i < PORT_NAMES.length; i++) {
            published.put(PORT_NAMES[i], proxy == null ? ports.get(PORT_NAMES[i]) : proxy.frontPorts().get(CurveProxy.CHANNELS[i]));
        }
        log("kernel " + kernelId + ": ports " + published + ", control " + control.port() + " on " + ip
                + (proxy == null ? " (plain ZMQ)" : " (CurveZMQ, Toree on " + LOOPBACK + " " + ports + ")"));

        // Toree's bootstrap logs the profile below, key included, at INFO: raise that one logger first.
        String noisy = ToreeLogging.quietProfileLogger();
        if (noisy != null) {
            log("kernel " + kernelId + ": WARNING: could not raise Toree's logger " + ToreeLogging.PROFILE_LOGGER
                    + " to WARN (" + noisy + "); Toree will log the kernel's connection profile, HMAC key included, "
                    + "to this container's log");
        }
        Map<String, Object> profile = new LinkedHashMap<>(ports);
        profile.put("ip", kernelIp);
        profile.put("transport", "tcp");
        profile.put("signature_scheme", "hmac-sha256");
        profile.put("key", key);
        Path profileDir = Files.createTempDirectory("toree-profile-",
                PosixFilePermissions.asFileAttribute(PosixFilePermissions.fromString("rwx------")));
        Path profileFile = profileDir.resolve("profile.json");
        Files.createFile(profileFile, PosixFilePermissions.asFileAttribute(PosixFilePermissions.fromString("rw-------")));
        Files.write(profileFile, Json.canonical(profile).getBytes(StandardCharsets.UTF_8));

        Map<String, Object> connInfo = new LinkedHashMap<>(profile);
        connInfo.putAll(published);
        connInfo.put("ip", ip);
        if (proxy != null) {
            connInfo.put(CURVE_PUBLIC_FIELD, proxy.publicKey());
        }
        String specName = System.getenv("KERNEL_SPEC_NAME");
        connInfo.put("kernel_name", specName == null || specName.isEmpty() ? "spark_scala_yarn_cluster" : specName);
        Map<String, Object> plaintext = new LinkedHashMap<>();
        plaintext.put("launch_token", token);
        plaintext.put("connection_info", connInfo);
        plaintext.put("control_port", (long) control.port());
        plaintext.put("pid", pid());
        plaintext.put("hostname", InetAddress.getLocalHost().getCanonicalHostName());
        byte[] frame = Protocol.encryptResponse(kernelId, plaintext, publicKey);
        plaintext.clear();

        CurveProxy front = proxy;
        Thread reporter = new Thread(() -> {
            try {
                awaitToreeSockets(ports, kernelIp, 120_000);
                if (front != null) {
                    Map<String, Integer> back = new LinkedHashMap<>();
                    for (int i = 0; i < PORT_NAMES.length; i++) {
                        back.put(CurveProxy.CHANNELS[i], ((Long) ports.get(PORT_NAMES[i])).intValue());
                    }
                    try {
                        front.start(back);  // Toree listens now: connecting cannot take its ports
                    } catch (RuntimeException e) {
                        throw new IOException("the CurveZMQ proxy did not start (" + e + ")", e);
                    }
                }
                // Toree installs its security manager while it starts; a shutdown comes only after the report.
                if (!ExitWatch.install(60_000)) {
                    log("kernel " + kernelId + ": Toree installed no security manager; a shutdown will end the "
                            + "YARN application FAILED");
                }
                if (mode.equals("eager")) {
                    SparkHooks.awaitSession(launchTimeoutMs());
                }
            } catch (IOException e) {
                log("kernel " + kernelId + ": " + e.getMessage());
                exit(1);
            } finally {
                deleteQuietly(profileFile);
                deleteQuietly(profileDir);
            }
            try {
                Protocol.sendResponse(responseAddress, frame, launchTimeoutMs());
            } catch (Exception e) {
                log("kernel " + kernelId + ": could not report to the gateway: " + e.getMessage());
                exit(1);
            }
            log("kernel " + kernelId + ": connection info delivered to " + responseAddress);
            if (mode.equals("lazy")) {
                Thread init = new Thread(SparkHooks::createSessionForRepl, "spark-init");
                init.setDaemon(true);
                init.start();
            }
        }, "launcher-report");
        reporter.setDaemon(true);
        reporter.start();

        handOver(socks.subList(0, PORT_NAMES.length));
        // Toree reads the profile first thing; in-process, so its arguments are in no process list.
        org.apache.toree.Main.main(new String[] {"--profile", profileFile.toString(),
            "--spark-context-initialization-mode", mode});
        log("kernel " + kernelId + ": Toree has stopped");
        control.stop();
        if (proxy != null) {
            proxy.close();
        }
        if (!ExitWatch.exiting()) {
            SparkHooks.stop(30_000);  // else Spark's own shutdown hook stops it, after this returns
        }
        return 0;
    }

    /**
     * Release the five kernel ports for Toree. JeroMQ (Toree's ZMQ) cannot adopt a bound socket
     * (libzmq's ZMQ_USE_FD has no JeroMQ equivalent) and binds its own from the profile, so each
     * port is closed here, immediately before {@code Main.main} starts: the profile is already
     * written, so nothing slow runs in between. The window in
     * which another process on the host could take a port is the time Toree needs to create its
     * actor system and bind its sockets (about a second). If that happens, Toree fails to bind,
     * {@link #awaitToreeSockets} sees a port listened on by another process (or not at all) and
     * the launcher exits without reporting, so the gateway never connects to a stranger's port.
     */
    private static void handOver(List<ServerSocket> kernelSockets) {
        for (ServerSocket s : kernelSockets) {
            try {
                s.close();
            } catch (IOException ignored) {
                // a socket that fails to close is closed
            }
        }
    }

    /**
     * Wait until every kernel port is a listening socket of this process (Linux /proc) on
     * {@code host} (an IPv4 address: its listener must be on exactly that address).
     */
    static void awaitToreeSockets(Map<String, Object> ports, String host, long timeoutMs) throws IOException {
        long deadline = System.currentTimeMillis() + timeoutMs;
        Set<Integer> wanted = new HashSet<>();
        for (Object p : ports.values()) {
            wanted.add(((Long) p).intValue());
        }
        boolean proc = Files.isReadable(Paths.get("/proc/net/tcp")) && Files.isDirectory(Paths.get("/proc/self/fd"));
        while (true) {
            if (proc) {
                Map<Integer, Set<String>> listening = listeningInodes(wanted, procHex(host));
                if (listening.keySet().containsAll(wanted)) {
                    Set<String> mine = ownSocketInodes();
                    for (Map.Entry<Integer, Set<String>> e : listening.entrySet()) {
                        e.getValue().retainAll(mine);
                        if (e.getValue().isEmpty()) {
                            throw new IOException("port " + e.getKey() + " was taken by another process before Toree "
                                    + "could bind it; giving up");
                        }
                    }
                    return;
                }
            } else if (allAccept(wanted)) {
                return;
            }
            if (System.currentTimeMillis() > deadline) {
                throw new IOException("Toree did not bind its sockets within " + timeoutMs / 1000 + " s");
            }
            Protocol.sleepQuietly(20);
        }
    }

    /** /proc/net/tcp6's prefix of an IPv4-mapped address (::ffff:a.b.c.d). */
    private static final String V4_MAPPED_PROC = "0000000000000000FFFF0000";

    /** /proc/net/tcp's spelling of an IPv4 address (little-endian hex), or null for any address. */
    static String procHex(String host) {
        String[] q = host.split("\\.");
        if (q.length != 4) {
            return null;
        }
        StringBuilder sb = new StringBuilder();
        for (int i = 3; i >= 0; i--) {
            sb.append(String.format("%02X", Integer.parseInt(q[i])));
        }
        return sb.toString();
    }

    /**
     * port -> inodes of LISTEN sockets on it, from /proc/net/tcp and tcp6; with {@code addrHex}, only
     * listeners on that IPv4 address count (so a kernel meant for loopback must be on loopback).
     */
    private static Map<Integer, Set<String>> listeningInodes(Set<Integer> wanted, String addrHex) throws IOException {
        Map<Integer, Set<String>> out = new HashMap<>();
        for (String table : new String[] {"/proc/net/tcp", "/proc/net/tcp6"}) {
            Path p = Paths.get(table);
            if (!Files.isReadable(p)) {
                continue;
            }
            List<String> lines = Files.readAllLines(p, StandardCharsets.US_ASCII);
            for (String line : lines.subList(1, lines.size())) {
                String[] f = line.trim().split("\\s+");
                if (f.length < 10 || !f[3].equals("0A")) {
                    continue;
                }
                int colon = f[1].lastIndexOf(':');
                int port = Integer.parseInt(f[1].substring(colon + 1), 16);
                String addr = f[1].substring(0, colon);
                if (addr.length() == 32 && addr.startsWith(V4_MAPPED_PROC)) {
                    addr = addr.substring(24);  // a dual-stack socket (Java NIO's, JeroMQ's) on an IPv4 address
                }
                boolean onAddress = addrHex == null || addr.equals(addrHex);
                if (wanted.contains(port) && onAddress) {
                    out.computeIfAbsent(port, k -> new HashSet<>()).add(f[9]);
                }
            }
        }
        return out;
    }

    private static Set<String> ownSocketInodes() throws IOException {
        Set<String> out = new HashSet<>();
        try (java.nio.file.DirectoryStream<Path> fds = Files.newDirectoryStream(Paths.get("/proc/self/fd"))) {
            for (Path fd : fds) {
                try {
                    String target = Files.readSymbolicLink(fd).toString();
                    if (target.startsWith("socket:[")) {
                        out.add(target.substring(8, target.length() - 1));
                    }
                } catch (IOException ignored) {
                    // the descriptor was closed meanwhile
                }
            }
        }
        return out;
    }

    private static boolean allAccept(Set<Integer> wanted) {
        for (int port : wanted) {
            try (Socket s = new Socket()) {
                s.connect(new InetSocketAddress(InetAddress.getLoopbackAddress(), port), 200);
            } catch (IOException e) {
                return false;
            }
        }
        return true;
    }

    /** Control-port actions. */
    private final class Actions implements ControlServer.Actions {
        private final String kernelId;

        Actions(String kernelId) {
            this.kernelId = kernelId;
        }

        @Override
        public void onSignal(int signum) {
            if (signum == 2) {
                long now = System.currentTimeMillis();
                if (now - lastSigint < SIGINT_SPACING_MS) {
                    log("kernel " + kernelId + ": interrupt within " + SIGINT_SPACING_MS + " ms of the last one; "
                            + "not raising SIGINT again (Toree would shut down)");
                } else {
                    lastSigint = now;
                    raise("INT");
                }
                // Signal first so the cell stops at once; cancelling jobs is a scheduler round trip.
                Thread t = new Thread(SparkHooks::cancelAllJobs, "spark-cancel");
                t.setDaemon(true);
                t.start();
            } else if (signum == 15 || signum == 1) {
                onShutdown();
            } else if (signum == 9) {
                Runtime.getRuntime().halt(137);
            } else {
                log("kernel " + kernelId + ": signal " + signum + " ignored (only 1, 2, 9 and 15 are meaningful)");
            }
        }

        @Override
        public void onShutdown() {
            log("kernel " + kernelId + ": shutdown requested over the control port");
            Thread t = new Thread(() -> {
                SparkHooks.stop(30_000);
                exit(0);
            }, "launcher-shutdown");
            t.start();
        }
    }

    /** Raise a signal in this JVM (sun.misc.Signal, through reflection: it is not in --release 8's API). */
    static void raise(String name) {
        try {
            Class<?> sig = Class.forName("sun.misc.Signal");
            Object s = sig.getConstructor(String.class).newInstance(name);
            Method raise = sig.getMethod("raise", sig);
            raise.invoke(null, s);
        } catch (ReflectiveOperationException e) {
            log("could not raise SIG" + name + ": " + e);
        }
    }

    /** Exit, and halt if shutdown hooks (Toree's, Spark's) hang: YARN must see the driver end. */
    static void exit(int code) {
        Thread watchdog = new Thread(() -> {
            Protocol.sleepQuietly(30_000);
            Runtime.getRuntime().halt(code);
        }, "exit-watchdog");
        watchdog.setDaemon(true);
        watchdog.start();
        System.exit(code);
    }

    /**
     * Read the launch token and remove it from the JVM's environment (so processes started from
     * notebooks do not inherit it) and from Spark's properties (spark.yarn.appMasterEnv.*), so a
     * notebook's {@code sc.getConf} does not show it. The token is single use in any case.
     */
    @SuppressWarnings("unchecked")
    static String takeToken() {
        String token = System.getenv(TOKEN_ENV);
        try {
            Map<String, String> env = System.getenv();
            Field m = env.getClass().getDeclaredField("m");
            m.setAccessible(true);
            ((Map<String, String>) m.get(env)).remove(TOKEN_ENV);
        } catch (ReflectiveOperationException | RuntimeException e) {
            log("could not remove " + TOKEN_ENV + " from the environment (" + e.getClass().getSimpleName() + ")");
        }
        System.clearProperty("spark.yarn.appMasterEnv." + TOKEN_ENV);
        System.clearProperty("spark.executorEnv." + TOKEN_ENV);
        return token;
    }

    /** The local address this host uses to reach the gateway (a UDP connect sends nothing). */
    static String reachableIp(String responseAddress) {
        int colon = responseAddress.lastIndexOf(':');
        String host = responseAddress.substring(0, colon).replace("[", "").replace("]", "");
        int port = Integer.parseInt(responseAddress.substring(colon + 1));
        try (DatagramSocket s = new DatagramSocket()) {
            s.connect(new InetSocketAddress(host, port));
            InetAddress a = s.getLocalAddress();
            if (a != null && !a.isAnyLocalAddress()) {
                return a.getHostAddress();
            }
        } catch (IOException e) {
            // fall through
        }
        try {
            return InetAddress.getLocalHost().getHostAddress();
        } catch (IOException e) {
            return "127.0.0.1";
        }
    }

    static long pid() {
        String name = java.lang.management.ManagementFactory.getRuntimeMXBean().getName();
        return Long.parseLong(name.substring(0, name.indexOf('@')));
    }

    static long launchTimeoutMs() {
        try {
            String v = System.getenv("KERNEL_LAUNCH_TIMEOUT");
            return Math.max(5_000, (long) (Double.parseDouble(v == null ? "120" : v) * 1000));
        } catch (NumberFormatException e) {
            return 120_000;
        }
    }

    static String hex(byte[] b) {
        StringBuilder sb = new StringBuilder();
        for (byte x : b) {
            sb.append(String.format("%02x", x & 0xff));
        }
        return sb.toString();
    }

    private static void deleteQuietly(Path p) {
        try {
            Files.deleteIfExists(p);
        } catch (IOException ignored) {
            // best effort; the container's directory goes away with the application
        }
    }
}
