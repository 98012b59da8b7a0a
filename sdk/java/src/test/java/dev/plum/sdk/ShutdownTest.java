package dev.plum.sdk;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.sun.net.httpserver.HttpServer;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.CompletionException;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.Test;

/** Clean shutdown: after close no watch, heartbeat or transport worker thread of the client is left. */
class ShutdownTest {
    @Test
    void closeEndsEveryThreadItStarted() throws Exception {
        HttpServer server = HttpServer.create(new InetSocketAddress(InetAddress.getLoopbackAddress(), 0), 0);
        AtomicInteger deregistered = new AtomicInteger();
        server.createContext("/", ex -> {
            String path = ex.getRequestURI().getPath();
            String body = "{}";
            if (path.equals("/v1/discovery")) {
                boolean watch = ex.getRequestURI().getQuery().contains("watch=true");
                if (watch) {
                    try {
                        Thread.sleep(200);
                    } catch (InterruptedException e) {
                        Thread.currentThread().interrupt();
                    }
                }
                body = "[{\"serviceName\":\"web\",\"instanceId\":\"a\",\"ip\":\"10.0.0.1\",\"port\":80,"
                        + "\"protocol\":\"http\",\"version\":\"1.0.0\"}]";
                ex.getResponseHeaders().add("x-plum-index", "5");
            } else if (ex.getRequestMethod().equals("DELETE")) {
                deregistered.incrementAndGet();
            }
            byte[] b = body.getBytes(StandardCharsets.UTF_8);
            ex.sendResponseHeaders(200, b.length);
            ex.getResponseBody().write(b);
            ex.close();
        });
        server.start();
        try {
            String url = "http://127.0.0.1:" + server.getAddress().getPort();
            PlumClient c = PlumClient.create(List.of(url), Options.defaults(),
                    new DiscoveryOptions(Duration.ofMillis(200), Duration.ofMinutes(1)));
            assertEquals(1, c.discover("web").endpoints().size());
            assertEquals(1, c.discoverAsync("web", Query.any().version("^1")).get().endpoints().size());
            Registrar r = c.registrar(Duration.ofMillis(400));
            r.register(Instance.of("i-1", "web", 8080));
            Thread.sleep(300);
            assertTrue(c.discovery().liveThreads() == 1 && r.threadAlive());
            c.close();
            c.close(); // twice: nothing
            assertEquals(0, c.discovery().liveThreads());
            assertFalse(r.threadAlive());
            assertEquals(1, deregistered.get(), "deregistered on close");
            assertTrue(c.transport().isClosed() && c.transport().executor().isTerminated()
                    || c.transport().executor().awaitTermination(5, java.util.concurrent.TimeUnit.SECONDS));
            for (Thread th : Thread.getAllStackTraces().keySet()) {
                assertFalse(th.isAlive() && (th.getName().startsWith("plum-discovery") || th.getName().startsWith("plum-registrar")),
                        "left running: " + th.getName());
            }
            assertThrows(PlumException.class, () -> c.kv().get("app", "k"));
            CompletionException e = assertThrows(CompletionException.class, () -> c.kv().getAsync("app", "k").join());
            assertTrue(e.getCause() instanceof PlumException);
        } finally {
            server.stop(0);
        }
    }
}
