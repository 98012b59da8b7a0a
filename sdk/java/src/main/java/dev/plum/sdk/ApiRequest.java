package dev.plum.sdk;

import java.time.Duration;

/**
 * One API call as the transport sends it: method, path (with query), body encoded once (so that
 * every attempt sends the same bytes, {@code requestId} included), and whether it may be resent
 * after an unknown outcome. Optional per-call attempt timeout, deadline and round limit override
 * the client's {@link Options}.
 */
public final class ApiRequest {
    final String method;
    final String path;
    final byte[] body;
    final boolean idempotent;
    final Duration attemptTimeout;
    final Duration deadline;
    final int maxRounds;

    private ApiRequest(String method, String path, byte[] body, boolean idempotent, Duration attemptTimeout,
                       Duration deadline, int maxRounds) {
        if (!path.startsWith("/")) {
            throw new IllegalArgumentException("the path must start with /");
        }
        this.method = method.toUpperCase(java.util.Locale.ROOT);
        this.path = path;
        this.body = body;
        this.idempotent = idempotent;
        this.attemptTimeout = attemptTimeout;
        this.deadline = deadline;
        this.maxRounds = maxRounds;
    }

    /** A read ({@code GET}): always safe to send again. */
    public static ApiRequest get(String path) {
        return new ApiRequest("GET", path, null, true, null, null, 0);
    }

    /**
     * A write. {@code idempotent}: may it be sent again after an unknown outcome (a timeout after
     * sending, {@code outcomeUnknown})? True for a KV write with a {@code requestId}, a
     * registration, a heartbeat; false for, e.g., creating a deployment.
     */
    public static ApiRequest write(String method, String path, byte[] body, boolean idempotent) {
        return new ApiRequest(method, path, body, idempotent, null, null, 0);
    }

    public ApiRequest withAttemptTimeout(Duration d) {
        return new ApiRequest(method, path, body, idempotent, d, deadline, maxRounds);
    }

    public ApiRequest withDeadline(Duration d) {
        return new ApiRequest(method, path, body, idempotent, attemptTimeout, d, maxRounds);
    }

    /**
     * Give up after this many rounds over the replicas (0: only the deadline bounds it). Watches
     * use 1: their own loop backs off, and marks the cache out of contact at once.
     */
    public ApiRequest withMaxRounds(int rounds) {
        return new ApiRequest(method, path, body, idempotent, attemptTimeout, deadline, rounds);
    }

    public String method() {
        return method;
    }

    public String path() {
        return path;
    }

    public boolean idempotent() {
        return idempotent;
    }

    boolean isRead() {
        return method.equals("GET") || method.equals("HEAD");
    }
}
