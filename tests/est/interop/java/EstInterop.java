// Bouncy Castle's EST client (org.bouncycastle.est) as an independent EST client: one operation per run.
//
// tests/est/test_bouncycastle.py compiles this file against the Debian packages libbcprov-java,
// libbcutil-java and libbcpkix-java, runs it against the listener on 127.0.0.1, and checks what it
// wrote (PEM files in DIR) with cryptography. Written for the Bouncy Castle API of 1.72 onwards, and
// for Java 17 onwards.
//
//   bootstrap    SERVER DIR FINGERPRINT  /cacerts without trust, pinned by SHA-256: writes DIR/ca.pem
//   cacerts      SERVER DIR              /cacerts verified with DIR/ca.pem: writes DIR/cacerts.pem
//   csrattrs     SERVER DIR              prints "requirement OID" for each CSR attribute
//   enroll       SERVER DIR ID PIN       simpleenroll after the 401 challenge, through 202s:
//                                        writes DIR/ID.key.pem and DIR/ID.pem
//   reenroll     SERVER DIR ID           simplereenroll with DIR/ID.pem as TLS client certificate and a
//                                        new key: writes DIR/ID-renewed.key.pem and DIR/ID-renewed.pem
//   serverkeygen SERVER DIR ID PIN       serverkeygen after the challenge, through 202s: writes
//                                        DIR/ID-generated.key.pem and DIR/ID-generated.pem
//   refused      SERVER DIR ID PIN CN    simpleenroll of CN=CN with id and PIN, expected to fail:
//                                        prints "refused STATUS" (Bouncy Castle's ESTException)
//
// SERVER is HOST:PORT. While the owner has not decided, each 202 prints "pending SECONDS" (the wait
// until Bouncy Castle's notBefore) before the request is sent again.

import java.io.FileReader;
import java.io.FileWriter;
import java.io.IOException;
import java.io.Reader;
import java.io.Writer;
import java.nio.file.Path;
import java.security.KeyPair;
import java.security.KeyPairGenerator;
import java.security.KeyStore;
import java.security.MessageDigest;
import java.security.PrivateKey;
import java.security.Security;
import java.security.cert.Certificate;
import java.security.cert.TrustAnchor;
import java.security.cert.X509Certificate;
import java.security.spec.ECGenParameterSpec;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.HexFormat;
import java.util.List;
import java.util.Set;

import javax.net.ssl.KeyManagerFactory;
import javax.net.ssl.X509TrustManager;

import org.bouncycastle.asn1.ASN1ObjectIdentifier;
import org.bouncycastle.asn1.pkcs.PrivateKeyInfo;
import org.bouncycastle.asn1.x500.X500Name;
import org.bouncycastle.cert.X509CertificateHolder;
import org.bouncycastle.cert.jcajce.JcaX509CertificateConverter;
import org.bouncycastle.est.CACertsResponse;
import org.bouncycastle.est.CSRAttributesResponse;
import org.bouncycastle.est.ESTException;
import org.bouncycastle.est.ESTService;
import org.bouncycastle.est.EnrollmentResponse;
import org.bouncycastle.est.HttpAuth;
import org.bouncycastle.est.jcajce.JcaJceUtils;
import org.bouncycastle.est.jcajce.JsseESTServiceBuilder;
import org.bouncycastle.jce.provider.BouncyCastleProvider;
import org.bouncycastle.openssl.PEMParser;
import org.bouncycastle.openssl.jcajce.JcaPEMKeyConverter;
import org.bouncycastle.openssl.jcajce.JcaPEMWriter;
import org.bouncycastle.operator.jcajce.JcaContentSignerBuilder;
import org.bouncycastle.pkcs.PKCS10CertificationRequest;
import org.bouncycastle.pkcs.jcajce.JcaPKCS10CertificationRequestBuilder;
import org.bouncycastle.util.Store;
import org.bouncycastle.util.io.pem.PemObject;

public final class EstInterop
{
    // The realm the listener names in its challenge: Bouncy Castle checks it when given one.
    private static final String REALM = "EST Appliance Pairing";
    private static final int TIMEOUT_MILLIS = 30_000;

    private EstInterop()
    {
    }

    public static void main(String[] args) throws Exception
    {
        // Bouncy Castle's certificate path trust manager asks for the "BC" provider by name.
        Security.addProvider(new BouncyCastleProvider());
        String operation = args[0];
        String server = args[1];
        Path dir = Path.of(args[2]);
        switch (operation)
        {
        case "bootstrap":
            bootstrap(server, dir, args[3]);
            break;
        case "cacerts":
            cacerts(server, dir);
            break;
        case "csrattrs":
            csrattrs(server, dir);
            break;
        case "enroll":
            enroll(server, dir, args[3], args[4]);
            break;
        case "reenroll":
            reenroll(server, dir, args[3]);
            break;
        case "serverkeygen":
            serverkeygen(server, dir, args[3], args[4]);
            break;
        case "refused":
            refused(server, dir, args[3], args[4], args[5]);
            break;
        default:
            throw new IllegalArgumentException("unknown operation " + operation);
        }
    }

    // --- RFC 7030 section 4.1.1: trust nothing, then pin the CA by its fingerprint -------------------

    private static void bootstrap(String server, Path dir, String fingerprint) throws Exception
    {
        X509TrustManager trustAll = JcaJceUtils.getTrustAllTrustManager();
        ESTService service = new JsseESTServiceBuilder(server, trustAll).withTimeout(TIMEOUT_MILLIS).build();
        CACertsResponse response = service.getCACerts();
        if (response.isTrusted())
        {
            throw new IllegalStateException("a bootstrap response must not count as trusted");
        }
        for (X509CertificateHolder holder : all(response.getCertificateStore()))
        {
            if (sha256(holder.getEncoded()).equals(fingerprint))
            {
                writePem(dir.resolve("ca.pem"), List.of(holder));
                System.out.println("pinned " + fingerprint);
                return;
            }
        }
        throw new IllegalStateException("no CA certificate has the SHA-256 fingerprint " + fingerprint);
    }

    private static void cacerts(String server, Path dir) throws Exception
    {
        CACertsResponse response = trusted(server, dir).getCACerts();
        if (!response.isTrusted())
        {
            throw new IllegalStateException("cacerts over a verified session must count as trusted");
        }
        writePem(dir.resolve("cacerts.pem"), all(response.getCertificateStore()));
    }

    private static void csrattrs(String server, Path dir) throws Exception
    {
        CSRAttributesResponse attributes = trusted(server, dir).getCSRAttributes().getAttributesResponse();
        for (ASN1ObjectIdentifier oid : attributes.getRequirements())
        {
            System.out.println("requirement " + oid.getId());
        }
    }

    // --- enrollment -------------------------------------------------------------------------------

    private static void enroll(String server, Path dir, String id, String pin) throws Exception
    {
        KeyPair keys = ecKeys();
        EnrollmentResponse response = trusted(server, dir).simpleEnroll(
            false, request(new X500Name("CN=" + id), keys), new HttpAuth(REALM, id, pin.toCharArray()));
        Store<X509CertificateHolder> issued = untilCompleted(trusted(server, dir), response).getStore();
        writeKey(dir.resolve(id + ".key.pem"), PrivateKeyInfo.getInstance(keys.getPrivate().getEncoded()));
        writePem(dir.resolve(id + ".pem"), all(issued));
    }

    private static void reenroll(String server, Path dir, String id) throws Exception
    {
        X509CertificateHolder current = readCertificates(dir.resolve(id + ".pem")).get(0);
        PrivateKey currentKey = readKey(dir.resolve(id + ".key.pem"));
        X509Certificate certificate = new JcaX509CertificateConverter().getCertificate(current);
        char[] password = "interop".toCharArray();
        KeyStore keyStore = KeyStore.getInstance("PKCS12");
        keyStore.load(null, null);
        keyStore.setKeyEntry(id, currentKey, password, new Certificate[] {certificate});
        KeyManagerFactory keyManagers = KeyManagerFactory.getInstance(KeyManagerFactory.getDefaultAlgorithm());
        keyManagers.init(keyStore, password);
        ESTService service = new JsseESTServiceBuilder(server, trustManagers(dir))
            .withKeyManagers(keyManagers.getKeyManagers())
            .withTimeout(TIMEOUT_MILLIS)
            .build();

        KeyPair newKeys = ecKeys();
        EnrollmentResponse response = service.simpleEnroll(true, request(current.getSubject(), newKeys), null);
        Store<X509CertificateHolder> issued = untilCompleted(service, response).getStore();
        writeKey(dir.resolve(id + "-renewed.key.pem"), PrivateKeyInfo.getInstance(newKeys.getPrivate().getEncoded()));
        writePem(dir.resolve(id + "-renewed.pem"), all(issued));
    }

    private static void serverkeygen(String server, Path dir, String id, String pin) throws Exception
    {
        ESTService service = trusted(server, dir);
        EnrollmentResponse response = service.simpleEnrollWithServersideCreation(
            request(new X500Name("CN=" + id), ecKeys()), new HttpAuth(REALM, id, pin.toCharArray()));
        response = untilCompleted(service, response);
        if (response.getPrivateKeyInfo() == null)
        {
            throw new IllegalStateException("serverkeygen answered without a private key");
        }
        writeKey(dir.resolve(id + "-generated.key.pem"), response.getPrivateKeyInfo());
        writePem(dir.resolve(id + "-generated.pem"), all(response.getStore()));
    }

    private static void refused(String server, Path dir, String id, String pin, String commonName)
        throws Exception
    {
        try
        {
            trusted(server, dir).simpleEnroll(
                false, request(new X500Name("CN=" + commonName), ecKeys()), new HttpAuth(REALM, id, pin.toCharArray()));
        }
        catch (ESTException refusal)
        {
            System.out.println("refused " + refusal.getStatusCode());
            return;
        }
        throw new IllegalStateException("the request was not refused");
    }

    /** Bouncy Castle's 202 loop: the same request again once notBefore has passed. */
    private static EnrollmentResponse untilCompleted(ESTService service, EnrollmentResponse response)
        throws Exception
    {
        while (!response.isCompleted())
        {
            long wait = Math.max(0, response.getNotBefore() - System.currentTimeMillis());
            System.out.println("pending " + (wait + 999) / 1000);
            System.out.flush();
            Thread.sleep(wait);
            response = service.simpleEnroll(response);
        }
        return response;
    }

    // --- helpers ----------------------------------------------------------------------------------

    private static ESTService trusted(String server, Path dir) throws Exception
    {
        return new JsseESTServiceBuilder(server, trustManagers(dir)).withTimeout(TIMEOUT_MILLIS).build();
    }

    private static X509TrustManager[] trustManagers(Path dir) throws Exception
    {
        Set<TrustAnchor> anchors = new HashSet<>();
        JcaX509CertificateConverter converter = new JcaX509CertificateConverter();
        for (X509CertificateHolder holder : readCertificates(dir.resolve("ca.pem")))
        {
            anchors.add(new TrustAnchor(converter.getCertificate(holder), null));
        }
        return JcaJceUtils.getCertPathTrustManager(anchors, null);
    }

    private static KeyPair ecKeys() throws Exception
    {
        KeyPairGenerator generator = KeyPairGenerator.getInstance("EC");
        generator.initialize(new ECGenParameterSpec("secp256r1"));
        return generator.generateKeyPair();
    }

    private static PKCS10CertificationRequest request(X500Name subject, KeyPair keys) throws Exception
    {
        return new JcaPKCS10CertificationRequestBuilder(subject, keys.getPublic())
            .build(new JcaContentSignerBuilder("SHA256withECDSA").build(keys.getPrivate()));
    }

    private static List<X509CertificateHolder> all(Store<X509CertificateHolder> store)
    {
        return new ArrayList<>(store.getMatches(null));
    }

    private static String sha256(byte[] der) throws Exception
    {
        return HexFormat.of().formatHex(MessageDigest.getInstance("SHA-256").digest(der));
    }

    private static List<X509CertificateHolder> readCertificates(Path path) throws IOException
    {
        List<X509CertificateHolder> holders = new ArrayList<>();
        try (Reader reader = new FileReader(path.toFile()); PEMParser parser = new PEMParser(reader))
        {
            for (Object item = parser.readObject(); item != null; item = parser.readObject())
            {
                holders.add((X509CertificateHolder)item);
            }
        }
        return holders;
    }

    private static PrivateKey readKey(Path path) throws IOException
    {
        try (Reader reader = new FileReader(path.toFile()); PEMParser parser = new PEMParser(reader))
        {
            return new JcaPEMKeyConverter().getPrivateKey((PrivateKeyInfo)parser.readObject());
        }
    }

    private static void writePem(Path path, List<X509CertificateHolder> certificates) throws IOException
    {
        if (certificates.isEmpty())
        {
            throw new IllegalStateException("no certificate to write to " + path);
        }
        try (Writer file = new FileWriter(path.toFile()); JcaPEMWriter writer = new JcaPEMWriter(file))
        {
            for (X509CertificateHolder holder : certificates)
            {
                writer.writeObject(holder);
            }
        }
    }

    private static void writeKey(Path path, PrivateKeyInfo key) throws IOException
    {
        try (Writer file = new FileWriter(path.toFile()); JcaPEMWriter writer = new JcaPEMWriter(file))
        {
            writer.writeObject(new PemObject("PRIVATE KEY", key.getEncoded()));
        }
    }
}
