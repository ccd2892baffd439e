// Serves TLS from a keystore and connects to it with a truststore, both through JSSE:
// java TlsHandshake.java KEYSTORE TYPE PASSWORD TRUSTSTORE TYPE PASSWORD
// Prints "OK <server certificate subject>" after a full handshake and one exchange.
import java.io.*;
import java.net.*;
import java.security.KeyStore;
import javax.net.ssl.*;

public class TlsHandshake {
    static KeyStore load(String path, String type, String password) throws Exception {
        KeyStore ks = KeyStore.getInstance(type);
        try (InputStream in = new FileInputStream(path)) {
            ks.load(in, password.toCharArray());
        }
        return ks;
    }

    public static void main(String[] a) throws Exception {
        KeyStore keys = load(a[0], a[1], a[2]);
        KeyStore trust = load(a[3], a[4], a[5]);
        if (trust.size() == 0) throw new IllegalStateException("truststore has no entries");
        KeyManagerFactory kmf = KeyManagerFactory.getInstance(KeyManagerFactory.getDefaultAlgorithm());
        kmf.init(keys, a[2].toCharArray());
        TrustManagerFactory tmf = TrustManagerFactory.getInstance(TrustManagerFactory.getDefaultAlgorithm());
        tmf.init(trust);
        SSLContext server = SSLContext.getInstance("TLS");
        server.init(kmf.getKeyManagers(), null, null);
        SSLContext client = SSLContext.getInstance("TLS");
        client.init(null, tmf.getTrustManagers(), null);
        try (SSLServerSocket ss = (SSLServerSocket) server.getServerSocketFactory()
                .createServerSocket(0, 1, InetAddress.getLoopbackAddress())) {
            Thread t = new Thread(() -> {
                try (SSLSocket s = (SSLSocket) ss.accept()) {
                    BufferedReader r = new BufferedReader(new InputStreamReader(s.getInputStream()));
                    String line = r.readLine();
                    PrintWriter w = new PrintWriter(s.getOutputStream(), true);
                    w.println("pong " + line);
                } catch (Exception e) {
                    e.printStackTrace();
                }
            });
            t.start();
            try (SSLSocket c = (SSLSocket) client.getSocketFactory()
                    .createSocket(InetAddress.getLoopbackAddress(), ss.getLocalPort())) {
                c.startHandshake();
                PrintWriter w = new PrintWriter(c.getOutputStream(), true);
                w.println("ping");
                String reply = new BufferedReader(new InputStreamReader(c.getInputStream())).readLine();
                if (!"pong ping".equals(reply)) throw new IllegalStateException("bad reply " + reply);
                java.security.cert.X509Certificate peer =
                    (java.security.cert.X509Certificate) c.getSession().getPeerCertificates()[0];
                System.out.println("OK " + peer.getSubjectX500Principal().getName());
            }
            t.join();
        }
    }
}
