package dev.plum.sdk;

import com.fasterxml.jackson.databind.JsonNode;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CopyOnWriteArrayList;

/**
 * The SDK's entry point: one transport (connection pool, leader knowledge, breakers, token)
 * shared by KV, discovery and registration. Blocking methods, and {@code ...Async} variants
 * returning {@link CompletableFuture}. Close it (try-with-resources): that deregisters what its
 * registrars hold, stops the discovery watch threads and the transport's threads.
 *
 * <pre>{@code
 * try (PlumClient plum = PlumClient.create(List.of("http://127.0.0.1:7101"), Options.builder().token(t).build())) {
 *     plum.kv().put("app", "color", "red");
 *     Discovered web = plum.discover("web", Query.any().version("^1.2"));
 * }
 * }</pre>
 */
public final class PlumClient implements AutoCloseable {
    private final Transport transport;
    private final Kv kv;
    private final Discovery discovery;
    private final List<Registrar> registrars = new CopyOnWriteArrayList<>();
    private volatile boolean closed;

    private PlumClient(List<String> urls, Options options, DiscoveryOptions discoveryOptions) {
        this.transport = new Transport(urls, options);
        this.kv = new Kv(transport);
        this.discovery = new Discovery(transport, discoveryOptions);
    }

    /** A client over every replica ({@code http://host:port}). */
    public static PlumClient create(List<String> urls, Options options) {
        return new PlumClient(urls, options, DiscoveryOptions.defaults());
    }

    public static PlumClient create(List<String> urls, Options options, DiscoveryOptions discoveryOptions) {
        return new PlumClient(urls, options, discoveryOptions);
    }

    /**
     * Controllers from {@code PLUM_CONTROLLERS}, the token from {@code PLUM_TOKEN} or the file
     * {@code PLUM_TOKEN_FILE} names (unless {@code options} has one).
     */
    public static PlumClient fromEnv(Options options) {
        String text = System.getenv("PLUM_CONTROLLERS");
        if (text == null || text.isBlank()) {
            throw new PlumException.ConfigError("PLUM_CONTROLLERS is not set");
        }
        if (options.token() == null) {
            String token = System.getenv("PLUM_TOKEN");
            String path = System.getenv("PLUM_TOKEN_FILE");
            if ((token == null || token.isBlank()) && path != null && !path.isBlank()) {
                try {
                    token = Files.readString(Path.of(path)).strip();
                } catch (IOException e) {
                    throw new PlumException.ConfigError("PLUM_TOKEN_FILE: " + e.getMessage());
                }
            }
            if (token != null && !token.isBlank()) {
                options = options.toBuilder().token(token).build();
            }
        }
        return create(parseControllers(text), options);
    }

    /** {@code host:port,http://host:port,...} → URLs ({@code http://} when no scheme is given). */
    public static List<String> parseControllers(String text) {
        List<String> urls = new ArrayList<>();
        for (String part : text.replace(' ', ',').split(",")) {
            String p = part.strip();
            while (p.endsWith("/")) {
                p = p.substring(0, p.length() - 1);
            }
            if (!p.isEmpty()) {
                urls.add(p.contains("://") ? p : "http://" + p);
            }
        }
        if (urls.isEmpty()) {
            throw new PlumException.ConfigError("no controller addresses");
        }
        return urls;
    }

    public Kv kv() {
        return kv;
    }

    public Discovery discovery() {
        return discovery;
    }

    public Transport transport() {
        return transport;
    }

    /** Endpoints of {@code service}, from the watched cache. */
    public Discovered discover(String service) {
        return discovery.find(service, null);
    }

    /** Endpoints of {@code service} passing {@code query}, from the watched cache. */
    public Discovered discover(String service, Query query) {
        return discovery.find(service, query);
    }

    public CompletableFuture<Discovered> discoverAsync(String service, Query query) {
        return discovery.findAsync(service, query);
    }

    /** A register-and-heartbeat helper declaring {@code ttl}; closed with the client. */
    public Registrar registrar(Duration ttl) {
        if (closed) {
            throw new PlumException("the client is closed");
        }
        Registrar r = new Registrar(transport, ttl);
        registrars.add(r);
        return r;
    }

    static ApiRequest raw(String method, String path, JsonNode body, boolean idempotent) {
        String m = method.toUpperCase(java.util.Locale.ROOT);
        boolean read = m.equals("GET") || m.equals("HEAD");
        return ApiRequest.write(m, path, body == null ? null : Json.encode(body), idempotent || read);
    }

    /**
     * Any API call through the transport. A write that is not {@code idempotent} is never resent
     * after an unknown outcome ({@link PlumException.OutcomeUnknown}).
     */
    public Answer request(String method, String path, JsonNode body, boolean idempotent) {
        return transport.send(raw(method, path, body, idempotent));
    }

    public CompletableFuture<Answer> requestAsync(String method, String path, JsonNode body, boolean idempotent) {
        return transport.sendAsync(raw(method, path, body, idempotent));
    }

    /** The leader's URL as last learnt, or {@code null}. */
    public String leader() {
        return transport.leader();
    }

    /**
     * Deregisters every registrar's instances, stops the discovery watches, ends the transport's
     * threads. Closing twice does nothing.
     */
    @Override
    public void close() {
        if (closed) {
            return;
        }
        closed = true;
        PlumException first = null;
        try {
            for (Registrar r : registrars) {
                try {
                    r.close();
                } catch (PlumException e) {
                    first = first == null ? e : first;
                }
            }
        } finally {
            discovery.close();
            transport.close();
        }
        if (first != null) {
            throw first;
        }
    }
}
