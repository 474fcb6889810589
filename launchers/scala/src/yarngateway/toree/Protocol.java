package yarngateway.toree;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.nio.charset.StandardCharsets;
import java.security.GeneralSecurityException;
import java.security.KeyFactory;
import java.security.PublicKey;
import java.security.SecureRandom;
import java.security.interfaces.RSAPublicKey;
import java.security.spec.MGF1ParameterSpec;
import java.security.spec.X509EncodedKeySpec;
import java.util.ArrayList;
import java.util.Base64;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import javax.crypto.Cipher;
import javax.crypto.spec.GCMParameterSpec;
import javax.crypto.spec.OAEPParameterSpec;
import javax.crypto.spec.PSource;
import javax.crypto.spec.SecretKeySpec;

/**
 * Launcher protocol v2 (PROTOCOL.md), launcher side, with the JDK's own crypto only. The wire
 * decisions are those of launchers/python/launcher_protocol.py and are pinned by
 * tests/protocol/vectors_v2.json (checked by {@link SelfTest}). Version 2 differs from 1 in the
 * frame's version and in the connection info's {@code curve_publickey} ({@link CurveProxy}).
 */
public final class Protocol {
    public static final int VERSION = 2;
    public static final int MAX_FRAME_BYTES = 64 * 1024;
    public static final int MIN_RSA_BITS = 2048;
    public static final int AES_KEY_BYTES = 32;
    public static final int GCM_NONCE_BYTES = 12;
    public static final int GCM_TAG_BITS = 128;
    public static final int MAX_LINE = 4096;

    private static final SecureRandom RANDOM = new SecureRandom();

    private Protocol() {
    }

    // ------------------------------------------------------------------ ports

    /** {@code lo..hi}; {@code 0..0} means any port. */
    public static int[] parsePortRange(String spec) {
        String[] parts = spec.trim().split("\\.\\.", -1);
        if (parts.length != 2 || !parts[0].matches("\\d{1,5}") || !parts[1].matches("\\d{1,5}")) {
            throw new IllegalArgumentException("port range must look like 'lo..hi', got '" + spec + "'");
        }
        int lo = Integer.parseInt(parts[0]);
        int hi = Integer.parseInt(parts[1]);
        if (!(lo == 0 && hi == 0) && !(1 <= lo && lo <= hi && hi <= 65535)) {
            throw new IllegalArgumentException("port range '" + spec + "' must satisfy 1 <= lo <= hi <= 65535 or be 0..0");
        }
        return new int[] {lo, hi};
    }

    /**
     * Bind {@code count} listening sockets at random distinct ports of the range on {@code host} and
     * return them bound, so nobody can take a port between choosing and using it.
     */
    public static List<ServerSocket> bindInRange(int count, int[] range, String host) throws IOException {
        List<Integer> candidates = new ArrayList<>();
        if (range[0] == 0 && range[1] == 0) {
            for (int i = 0; i < count; i++) {
                candidates.add(0);
            }
        } else {
            for (int p = range[0]; p <= range[1]; p++) {
                candidates.add(p);
            }
            Collections.shuffle(candidates, RANDOM);
        }
        List<ServerSocket> bound = new ArrayList<>();
        for (int port : candidates) {
            if (bound.size() == count) {
                break;
            }
            ServerSocket s = new ServerSocket();
            // Only skips TIME_WAIT leftovers: Linux still refuses a second listener on the port.
            s.setReuseAddress(true);
            try {
                s.bind(new InetSocketAddress(host, port), 128);
            } catch (IOException e) {
                s.close();
                continue;
            }
            bound.add(s);
        }
        if (bound.size() < count) {
            for (ServerSocket s : bound) {
                s.close();
            }
            throw new IOException("only " + bound.size() + " of " + count + " ports free in range "
                    + range[0] + ".." + range[1] + " on " + host);
        }
        return bound;
    }

    // ------------------------------------------------------------------ response

    public static byte[] randomBytes(int n) {
        byte[] b = new byte[n];
        RANDOM.nextBytes(b);
        return b;
    }

    /** The gateway's key: base64 DER SubjectPublicKeyInfo, RSA, at least 2048 bits. */
    public static PublicKey loadPublicKey(String b64) throws GeneralSecurityException {
        byte[] der = Base64.getDecoder().decode(b64.trim());
        PublicKey key = KeyFactory.getInstance("RSA").generatePublic(new X509EncodedKeySpec(der));
        int bits = ((RSAPublicKey) key).getModulus().bitLength();
        if (bits < MIN_RSA_BITS) {
            throw new GeneralSecurityException("gateway RSA key has " + bits + " bits; at least " + MIN_RSA_BITS + " required");
        }
        return key;
    }

    /** RSA-OAEP with SHA-256 and MGF1-SHA-256 spelled out: the JDK's default MGF1 hash is SHA-1. */
    public static OAEPParameterSpec oaepParams() {
        return new OAEPParameterSpec("SHA-256", "MGF1", MGF1ParameterSpec.SHA256, PSource.PSpecified.DEFAULT);
    }

    public static byte[] rsaWrap(PublicKey key, byte[] aesKey) throws GeneralSecurityException {
        Cipher c = Cipher.getInstance("RSA/ECB/OAEPWithSHA-256AndMGF1Padding");
        c.init(Cipher.ENCRYPT_MODE, key, oaepParams(), RANDOM);
        return c.doFinal(aesKey);
    }

    /** AES-256-GCM, AAD = kernel id (ASCII); returns ciphertext || 16-byte tag. */
    public static byte[] aesGcmEncrypt(byte[] aesKey, byte[] nonce, String kernelId, byte[] plaintext)
            throws GeneralSecurityException {
        Cipher c = Cipher.getInstance("AES/GCM/NoPadding");
        c.init(Cipher.ENCRYPT_MODE, new SecretKeySpec(aesKey, "AES"), new GCMParameterSpec(GCM_TAG_BITS, nonce));
        c.updateAAD(kernelId.getBytes(StandardCharsets.US_ASCII));
        return c.doFinal(plaintext);
    }

    /** 4-byte big-endian length + canonical JSON body. */
    public static byte[] encodeFrame(String kernelId, byte[] wrappedKey, byte[] nonce, byte[] ctAndTag) {
        Map<String, Object> body = new LinkedHashMap<>();
        body.put("version", (long) VERSION);
        body.put("kernel_id", kernelId);
        body.put("key", Base64.getEncoder().encodeToString(wrappedKey));
        body.put("nonce", Base64.getEncoder().encodeToString(nonce));
        body.put("ciphertext", Base64.getEncoder().encodeToString(ctAndTag));
        byte[] raw = Json.canonical(body).getBytes(StandardCharsets.UTF_8);
        if (raw.length > MAX_FRAME_BYTES) {
            throw new IllegalArgumentException("response frame of " + raw.length + " bytes exceeds " + MAX_FRAME_BYTES);
        }
        byte[] frame = new byte[4 + raw.length];
        frame[0] = (byte) (raw.length >>> 24);
        frame[1] = (byte) (raw.length >>> 16);
        frame[2] = (byte) (raw.length >>> 8);
        frame[3] = (byte) raw.length;
        System.arraycopy(raw, 0, frame, 4, raw.length);
        return frame;
    }

    /** The complete frame for {@code plaintext}, with fresh AES key and nonce. */
    public static byte[] encryptResponse(String kernelId, Map<String, Object> plaintext, PublicKey key)
            throws GeneralSecurityException {
        byte[] aesKey = randomBytes(AES_KEY_BYTES);
        byte[] nonce = randomBytes(GCM_NONCE_BYTES);
        byte[] ct = aesGcmEncrypt(aesKey, nonce, kernelId, Json.canonical(plaintext).getBytes(StandardCharsets.UTF_8));
        byte[] wrapped = rsaWrap(key, aesKey);
        java.util.Arrays.fill(aesKey, (byte) 0);
        return encodeFrame(kernelId, wrapped, nonce, ct);
    }

    /** The gateway answered {@code status: error}. */
    public static final class Rejected extends Exception {
        private static final long serialVersionUID = 1L;
        public final String reason;

        Rejected(String reason) {
            super("gateway rejected the response: " + reason);
            this.reason = reason;
        }
    }

    /** Answer codes that mean "not processed, send again" (launcher_protocol.RETRYABLE_CODES). */
    static boolean isRetryable(String reason) {
        String code = reason.split(":", 2)[0];
        return "busy".equals(code) || "timeout".equals(code);
    }

    /**
     * Send {@code frame} to {@code host:port}; retry connection errors and the answers "busy" and
     * "timeout" (the gateway did not process the frame) with jittered exponential backoff until
     * {@code timeoutMs}. Any other error answer is final, except "duplicate" after an earlier
     * attempt delivered the whole frame (its answer was lost: the gateway has it).
     */
    public static void sendResponse(String address, byte[] frame, long timeoutMs) throws IOException, Rejected {
        int colon = address.lastIndexOf(':');
        if (colon <= 0) {
            throw new IllegalArgumentException("address must be host:port, got '" + address + "'");
        }
        String host = address.substring(0, colon).replace("[", "").replace("]", "");
        int port = Integer.parseInt(address.substring(colon + 1));
        long deadline = System.currentTimeMillis() + timeoutMs;
        long backoff = 200;
        boolean delivered = false;
        Exception last = null;
        while (true) {
            long remaining = deadline - System.currentTimeMillis();
            if (remaining <= 0) {
                throw new IOException("could not deliver the response to " + address + ": " + last);
            }
            Map<String, Object> answer;
            try (Socket s = new Socket()) {
                int io = (int) Math.min(10_000, remaining);
                s.connect(new InetSocketAddress(host, port), io);
                s.setSoTimeout(io);
                OutputStream out = s.getOutputStream();
                out.write(frame);
                out.flush();
                delivered = true;
                answer = asObject(Json.parse(readLine(s.getInputStream(), MAX_LINE)));
            } catch (IOException | IllegalArgumentException e) {
                last = e;
                System.err.println("[yarn-gateway toree launcher] response to " + address + " failed ("
                        + e.getClass().getSimpleName() + "); retrying");
                long sleep = (long) (backoff * (0.5 + RANDOM.nextDouble()));
                sleepQuietly(Math.min(sleep, Math.max(0, deadline - System.currentTimeMillis())));
                backoff = Math.min(backoff * 2, 5000);
                continue;
            }
            if ("ok".equals(answer.get("status"))) {
                return;
            }
            String reason = String.valueOf(answer.getOrDefault("reason", "no reason given"));
            if (delivered && last != null && reason.startsWith("duplicate")) {
                return;
            }
            if (!isRetryable(reason)) {
                throw new Rejected(reason);
            }
            last = new Rejected(reason);
            System.err.println("[yarn-gateway toree launcher] response to " + address + " answered "
                    + reason.split(":", 2)[0] + "; retrying");
            long sleep = (long) (backoff * (0.5 + RANDOM.nextDouble()));
            sleepQuietly(Math.min(sleep, Math.max(0, deadline - System.currentTimeMillis())));
            backoff = Math.min(backoff * 2, 5000);
        }
    }

    @SuppressWarnings("unchecked")
    static Map<String, Object> asObject(Object v) {
        if (!(v instanceof Map)) {
            throw new IllegalArgumentException("not a JSON object");
        }
        return (Map<String, Object>) v;
    }

    /**
     * One UTF-8 line (without the newline) of at most {@code limit} bytes that must arrive whole by
     * {@code deadlineMs} (System.currentTimeMillis), however the peer drips it: each read waits at
     * most for the time left. Bytes after the newline are dropped (one request per connection).
     */
    public static String readLine(Socket s, int limit, long deadlineMs) throws IOException {
        InputStream in = s.getInputStream();
        ByteArrayOutputStream buf = new ByteArrayOutputStream();
        byte[] chunk = new byte[1024];
        while (true) {
            long remaining = deadlineMs - System.currentTimeMillis();
            if (remaining <= 0) {
                throw new java.net.SocketTimeoutException("no complete line in time");
            }
            s.setSoTimeout((int) Math.min(Integer.MAX_VALUE, remaining));
            int n = in.read(chunk);
            if (n < 0) {
                if (buf.size() == 0) {
                    throw new IOException("peer closed without a line");
                }
                break;
            }
            int nl = -1;
            for (int i = 0; i < n; i++) {
                if (chunk[i] == '\n') {
                    nl = i;
                    break;
                }
            }
            buf.write(chunk, 0, nl < 0 ? n : nl);
            if (buf.size() > limit) {
                throw new IOException("line too long");
            }
            if (nl >= 0) {
                break;
            }
        }
        return new String(buf.toByteArray(), StandardCharsets.UTF_8);
    }

    /** One UTF-8 line (without the newline), at most {@code limit} bytes. */
    public static String readLine(InputStream in, int limit) throws IOException {
        ByteArrayOutputStream buf = new ByteArrayOutputStream();
        while (true) {
            int b = in.read();
            if (b < 0) {
                if (buf.size() == 0) {
                    throw new IOException("peer closed without a line");
                }
                break;
            }
            if (b == '\n') {
                break;
            }
            buf.write(b);
            if (buf.size() > limit) {
                throw new IOException("line too long");
            }
        }
        return new String(buf.toByteArray(), StandardCharsets.UTF_8);
    }

    static void sleepQuietly(long ms) {
        try {
            Thread.sleep(ms);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }
}
