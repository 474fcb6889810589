package yarngateway.toree;

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Paths;
import java.security.KeyFactory;
import java.security.PrivateKey;
import java.security.PublicKey;
import java.security.spec.PKCS8EncodedKeySpec;
import java.util.Arrays;
import java.util.Base64;
import java.util.List;
import java.util.Map;
import javax.crypto.Cipher;

/**
 * Checks this implementation against the shared protocol vectors (tests/protocol/vectors_v2.json,
 * format in tests/protocol/make_vectors.py). JDK classes only, so it runs without Spark or Toree:
 * {@code java -cp yarn-gateway-toree-launcher.jar yarngateway.toree.SelfTest vectors_v2.json}.
 * Prints one line per check ("ok NAME" or "FAIL NAME: why") and exits 1 if any check failed.
 */
public final class SelfTest {
    private int failures;

    private SelfTest() {
    }

    public static void main(String[] args) throws Exception {
        if (args.length != 1) {
            System.err.println("usage: SelfTest <vectors_v2.json>");
            System.exit(2);
        }
        SelfTest t = new SelfTest();
        t.run(Protocol.asObject(Json.parse(new String(Files.readAllBytes(Paths.get(args[0])), StandardCharsets.UTF_8))));
        System.out.println(t.failures == 0 ? "ALL OK" : t.failures + " FAILED");
        System.exit(t.failures == 0 ? 0 : 1);
    }

    private void check(String name, boolean ok, String why) {
        if (ok) {
            System.out.println("ok " + name);
        } else {
            failures++;
            System.out.println("FAIL " + name + ": " + why);
        }
    }

    private static byte[] hex(String s) {
        byte[] out = new byte[s.length() / 2];
        for (int i = 0; i < out.length; i++) {
            out[i] = (byte) Integer.parseInt(s.substring(2 * i, 2 * i + 2), 16);
        }
        return out;
    }

    private static byte[] b64(Object s) {
        return Base64.getDecoder().decode((String) s);
    }

    @SuppressWarnings("unchecked")
    private void run(Map<String, Object> v) throws Exception {
        check("protocol_version", Long.valueOf(Protocol.VERSION).equals(v.get("protocol_version")), "version differs");
        PublicKey pub = Protocol.loadPublicKey((String) v.get("rsa_public_key_b64"));
        String pem = ((String) v.get("rsa_private_key_pem")).replaceAll("-----[A-Z ]+-----", "").replaceAll("\\s", "");
        PrivateKey priv = KeyFactory.getInstance("RSA").generatePrivate(new PKCS8EncodedKeySpec(Base64.getDecoder().decode(pem)));

        Map<String, Object> r = Protocol.asObject(v.get("response"));
        String kernelId = (String) r.get("kernel_id");
        byte[] plain = Json.canonical(r.get("plaintext")).getBytes(StandardCharsets.UTF_8);
        Map<String, Object> ci = Protocol.asObject(Protocol.asObject(r.get("plaintext")).get("connection_info"));
        check("response.curve_publickey_only", ci.get(ToreeLauncher.CURVE_PUBLIC_FIELD) instanceof String
                && ((String) ci.get(ToreeLauncher.CURVE_PUBLIC_FIELD)).length() == 40 && !ci.containsKey("curve_secretkey"),
                "the vector's connection_info should carry a 40-character curve_publickey and no secret");
        check("response.plaintext_canonical", Arrays.equals(plain, b64(r.get("plaintext_b64"))), "canonical JSON differs");
        byte[] aesKey = hex((String) r.get("aes_key_hex"));
        byte[] nonce = hex((String) r.get("nonce_hex"));
        byte[] ct = Protocol.aesGcmEncrypt(aesKey, nonce, kernelId, plain);
        check("response.aes_gcm", Arrays.equals(ct, b64(r.get("ciphertext_and_tag_b64"))), "ciphertext||tag differs");

        Cipher dec = Cipher.getInstance("RSA/ECB/OAEPWithSHA-256AndMGF1Padding");
        dec.init(Cipher.DECRYPT_MODE, priv, Protocol.oaepParams());
        check("response.oaep_params_match_python",
                Arrays.equals(dec.doFinal(b64(r.get("wrapped_key_b64"))), aesKey), "vector's wrapped key does not unwrap");
        byte[] ours = Protocol.rsaWrap(pub, aesKey);
        dec.init(Cipher.DECRYPT_MODE, priv, Protocol.oaepParams());
        check("response.oaep_roundtrip", ours.length == 256 && Arrays.equals(dec.doFinal(ours), aesKey), "our wrap does not unwrap");

        byte[] frame = Protocol.encodeFrame(kernelId, b64(r.get("wrapped_key_b64")), nonce, ct);
        check("response.frame", Arrays.equals(frame, b64(r.get("frame_b64"))), "frame bytes differ");
        check("response.frame_body", new String(frame, 4, frame.length - 4, StandardCharsets.UTF_8).equals(r.get("frame_body")),
                "frame body differs");
        byte[] full = Protocol.encryptResponse(kernelId, (Map<String, Object>) r.get("plaintext"), pub);
        check("response.fresh_frame_parses", full.length > 4
                && Protocol.asObject(Json.parse(new String(full, 4, full.length - 4, StandardCharsets.UTF_8))).get("version").equals((long) Protocol.VERSION),
                "fresh frame malformed");

        for (Object o : (List<Object>) v.get("control")) {
            Map<String, Object> c = Protocol.asObject(o);
            Map<String, Object> fields = Protocol.asObject(c.get("fields"));
            String name = "control." + fields.get("request");
            check(name + ".canonical", Json.canonical(fields).equals(c.get("canonical")), "canonical text differs");
            byte[] key = ((String) c.get("key")).getBytes(StandardCharsets.UTF_8);
            check(name + ".mac", ControlServer.Verifier.mac(fields, key).equals(c.get("mac_hex")), "MAC differs");
            long now = (Long) c.get("now");
            ControlServer.Verifier ver = new ControlServer.Verifier((String) fields.get("kernel_id"), (String) c.get("key"),
                    60, 4096, () -> now);
            Map<String, Object> req = new java.util.LinkedHashMap<>(fields);
            req.put("mac", c.get("mac_hex"));
            String err = null;
            try {
                ver.verify(req);
            } catch (ControlServer.Refused e) {
                err = e.getMessage();
            }
            check(name + ".accepted", err == null, "refused: " + err);
        }

        for (Object o : (List<Object>) v.get("negative")) {
            Map<String, Object> n = Protocol.asObject(o);
            if (!"control".equals(n.get("kind"))) {
                continue; // frame vectors are for the gateway side
            }
            long now = (Long) n.get("now");
            ControlServer.Verifier ver = new ControlServer.Verifier((String) n.get("kernel_id"), (String) n.get("key"),
                    60, 4096, () -> now);
            for (Object seen : (List<Object>) n.get("seen_nonces")) {
                ver.markSeen((String) seen);
            }
            String code = null;
            try {
                ver.verify(n.get("request"));
            } catch (ControlServer.Refused e) {
                code = e.code;
            }
            check("negative." + n.get("name"), String.valueOf(n.get("expect_error")).equals(code),
                    "expected " + n.get("expect_error") + ", got " + code);
        }
    }
}
