package dev.plum.sdk;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.net.URLEncoder;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionException;

/**
 * Config KV: get, put, delete, list by prefix, compare-and-set, and watches resumable from an
 * index. Every write carries a generated {@code requestId}, which makes it idempotent on the
 * server (a retry within 10 minutes is answered as the first time), so the transport may resend
 * it after an unknown outcome: each write is applied exactly once. Every operation has a blocking
 * form and an {@code ...Async} form returning a {@link CompletableFuture}.
 */
public final class Kv {
    /** How long one watch request waits on the server before answering unchanged. */
    public static final Duration WATCH_WAIT = Duration.ofSeconds(25);
    static final Set<String> TYPES = Set.of("string", "int", "double", "bool", "bytes");

    private final Transport t;

    Kv(Transport t) {
        this.t = t;
    }

    /** A fresh id for one logical write (the same for all its retries). */
    public static String requestId() {
        return Decision.randomHex(16);
    }

    static String seg(String s) {
        return URLEncoder.encode(s, StandardCharsets.UTF_8).replace("+", "%20");
    }

    /** {@code /v1/kv/{ns}/key/{key}}, both escaped (keys may hold {@code /}, spaces, {@code keys}...). */
    static String keyPath(String ns, String key) {
        return "/v1/kv/" + seg(ns) + "/key/" + seg(key);
    }

    static String nsPath(String ns) {
        return "/v1/kv/" + seg(ns);
    }

    // ---- requests and readers, shared by both forms -------------------------------------

    static ApiRequest getRequest(String ns, String key, boolean consistent) {
        return ApiRequest.get(keyPath(ns, key) + (consistent ? "?consistent=true" : ""));
    }

    static ApiRequest putRequest(String ns, String key, String value, String type, Long expectVersion) {
        if (!TYPES.contains(type)) {
            throw new IllegalArgumentException("unknown KV type `" + type + "` (one of string, int, double, bool, bytes)");
        }
        ObjectNode body = Json.object().put("value", value).put("type", type).put("requestId", requestId());
        if (expectVersion != null) {
            body.put("expectVersion", expectVersion);
        }
        return ApiRequest.write("PUT", keyPath(ns, key), Json.encode(body), true);
    }

    static ApiRequest deleteRequest(String ns, String key, Long expectVersion) {
        String path = keyPath(ns, key);
        if (expectVersion != null) {
            path += "?expectVersion=" + expectVersion;
        }
        // Deleting is idempotent (done also when absent); with expectVersion a resend after an
        // unknown outcome may answer 409 although the first attempt deleted: read before deciding.
        return ApiRequest.write("DELETE", path, null, expectVersion == null);
    }

    static ApiRequest listRequest(String ns, String prefix) {
        return ApiRequest.get(nsPath(ns) + "?prefix=" + seg(prefix));
    }

    static ApiRequest watchRequest(String ns, String prefix, long index, Duration wait) {
        return ApiRequest.get(nsPath(ns) + "?prefix=" + seg(prefix) + "&watch=true&index=" + index + "&timeoutMs="
                + wait.toMillis()).withAttemptTimeout(wait.plusSeconds(5)).withDeadline(wait.multipliedBy(3));
    }

    static KvWritten readWritten(Answer a) {
        JsonNode n = a.json();
        return KvWritten.fromJson(n == null ? Json.object() : n);
    }

    static List<KvItem> readItems(Answer a) {
        JsonNode n = a.json();
        List<KvItem> out = new ArrayList<>();
        if (n != null && n.isArray()) {
            n.forEach(d -> out.add(KvItem.fromJson(d)));
        }
        return out;
    }

    /**
     * A watch answer: a change only when its index moved past where the watch stands (an answer
     * on timeout, or from a replica that lags, is none).
     */
    static KvChange readChange(Answer a, long current) {
        long changed = a.index().orElse(0);
        return changed > current ? new KvChange(changed, readItems(a)) : null;
    }

    private static Optional<KvItem> readItem(Answer a) {
        JsonNode n = a.json();
        return n == null || n.isNull() ? Optional.empty() : Optional.of(KvItem.fromJson(n));
    }

    // ---- blocking -----------------------------------------------------------------------------

    /** The key, or empty when absent. */
    public Optional<KvItem> get(String ns, String key) {
        return get(ns, key, false);
    }

    /** The key, or empty; {@code consistent}: a linearizable read (needs a leader). */
    public Optional<KvItem> get(String ns, String key, boolean consistent) {
        try {
            return readItem(t.send(getRequest(ns, key, consistent)));
        } catch (PlumException.NotFound e) {
            return Optional.empty();
        }
    }

    public KvWritten put(String ns, String key, String value) {
        return put(ns, key, value, "string", null);
    }

    /**
     * Writes {@code value} of {@code type}; with {@code expectVersion} only if the key is at that
     * version (0: absent), else {@link PlumException.Conflict}.
     */
    public KvWritten put(String ns, String key, String value, String type, Long expectVersion) {
        return readWritten(t.send(putRequest(ns, key, value, type, expectVersion)));
    }

    public KvWritten compareAndSet(String ns, String key, String value, long expectVersion) {
        return put(ns, key, value, "string", expectVersion);
    }

    public void delete(String ns, String key) {
        delete(ns, key, null);
    }

    public void delete(String ns, String key, Long expectVersion) {
        t.send(deleteRequest(ns, key, expectVersion));
    }

    /** Keys of {@code ns} starting with {@code prefix}, sorted by key. */
    public List<KvItem> list(String ns, String prefix) {
        return readItems(t.send(listRequest(ns, prefix)));
    }

    /** Changes under {@code ns}/{@code prefix} after {@code fromIndex}. */
    public KvWatch watch(String ns, String prefix, long fromIndex) {
        return watch(ns, prefix, fromIndex, WATCH_WAIT);
    }

    public KvWatch watch(String ns, String prefix, long fromIndex, Duration wait) {
        return new KvWatch(t, ns, prefix, fromIndex, wait);
    }

    // ---- async ----------------------------------------------------------------------------------

    public CompletableFuture<Optional<KvItem>> getAsync(String ns, String key) {
        return getAsync(ns, key, false);
    }

    public CompletableFuture<Optional<KvItem>> getAsync(String ns, String key, boolean consistent) {
        return t.sendAsync(getRequest(ns, key, consistent)).handle((a, e) -> {
            if (e == null) {
                return readItem(a);
            }
            Throwable c = Transport.unwrap(e);
            if (c instanceof PlumException.NotFound) {
                return Optional.empty();
            }
            throw c instanceof CompletionException ? (CompletionException) c : new CompletionException(c);
        });
    }

    public CompletableFuture<KvWritten> putAsync(String ns, String key, String value) {
        return putAsync(ns, key, value, "string", null);
    }

    public CompletableFuture<KvWritten> putAsync(String ns, String key, String value, String type, Long expectVersion) {
        return send(() -> putRequest(ns, key, value, type, expectVersion)).thenApply(Kv::readWritten);
    }

    public CompletableFuture<KvWritten> compareAndSetAsync(String ns, String key, String value, long expectVersion) {
        return putAsync(ns, key, value, "string", expectVersion);
    }

    public CompletableFuture<Void> deleteAsync(String ns, String key) {
        return deleteAsync(ns, key, null);
    }

    public CompletableFuture<Void> deleteAsync(String ns, String key, Long expectVersion) {
        return t.sendAsync(deleteRequest(ns, key, expectVersion)).thenApply(a -> null);
    }

    public CompletableFuture<List<KvItem>> listAsync(String ns, String prefix) {
        return t.sendAsync(listRequest(ns, prefix)).thenApply(Kv::readItems);
    }

    private CompletableFuture<Answer> send(java.util.function.Supplier<ApiRequest> req) {
        try {
            return t.sendAsync(req.get());
        } catch (RuntimeException e) {
            return CompletableFuture.failedFuture(e);
        }
    }
}
