package dev.plum.sdk;

import com.fasterxml.jackson.databind.JsonNode;

/**
 * Base of every error the SDK throws (unchecked, so that it also travels through
 * {@link java.util.concurrent.CompletableFuture}s as the cause of a {@code CompletionException}).
 * The subclasses are the same cases as the Rust SDK's {@code ClientError} and the Python SDK's
 * errors.
 */
public class PlumException extends RuntimeException {
    private static final long serialVersionUID = 1L;

    public PlumException(String message) {
        super(message);
    }

    public PlumException(String message, Throwable cause) {
        super(message, cause);
    }

    /**
     * No replica answered in time, or none could take the request (no leader). Nothing was
     * applied: a write whose outcome may be unknown ends as {@link OutcomeUnknown} instead.
     */
    public static class Unreachable extends PlumException {
        private static final long serialVersionUID = 1L;

        public Unreachable(String message) {
            super(message);
        }
    }

    /**
     * A write that may or may not have been applied (the leader was lost, or the attempt timed out
     * after sending). Only idempotent writes are resent after this; read before deciding.
     */
    public static class OutcomeUnknown extends PlumException {
        private static final long serialVersionUID = 1L;

        public OutcomeUnknown(String message) {
            super(message);
        }
    }

    /** The client was given something it cannot use (no addresses, a malformed one). */
    public static class ConfigError extends PlumException {
        private static final long serialVersionUID = 1L;

        public ConfigError(String message) {
            super(message);
        }
    }

    /** An answer that is not the JSON expected. */
    public static class DecodeError extends PlumException {
        private static final long serialVersionUID = 1L;

        public DecodeError(String message) {
            super(message);
        }
    }

    /** A replica answered with an error status (4xx, or a 5xx that is not retryable). */
    public static class StatusError extends PlumException {
        private static final long serialVersionUID = 1L;
        private final int status;
        private final String body;

        public StatusError(int status, String body) {
            super("HTTP " + status + ": " + errorMessage(status, body));
            this.status = status;
            this.body = body;
        }

        public int status() {
            return status;
        }

        public String body() {
            return body;
        }

        /** The cluster's {@code {"error", "retryable", "outcomeUnknown", "detail", ...}}, if sent. */
        public JsonNode errorBody() {
            JsonNode n = Json.tryParse(body);
            return n != null && n.isObject() ? n : null;
        }
    }

    /** 404. */
    public static class NotFound extends StatusError {
        private static final long serialVersionUID = 1L;

        public NotFound(int status, String body) {
            super(status, body);
        }
    }

    /** 409: e.g. a compare-and-set against another version ({@code errorBody().get("detail")}). */
    public static class Conflict extends StatusError {
        private static final long serialVersionUID = 1L;

        public Conflict(int status, String body) {
            super(status, body);
        }
    }

    /** 401: no token, or one the cluster does not accept. Never retried on another replica. */
    public static class Unauthorized extends StatusError {
        private static final long serialVersionUID = 1L;

        public Unauthorized(int status, String body) {
            super(status, body);
        }
    }

    /** 403: the token's role may not make this call. Never retried on another replica. */
    public static class Forbidden extends StatusError {
        private static final long serialVersionUID = 1L;

        public Forbidden(int status, String body) {
            super(status, body);
        }
    }

    static StatusError statusError(int status, String body) {
        switch (status) {
            case 401: return new Unauthorized(status, body);
            case 403: return new Forbidden(status, body);
            case 404: return new NotFound(status, body);
            case 409: return new Conflict(status, body);
            default: return new StatusError(status, body);
        }
    }

    /** The {@code error} of a JSON error body, else the (clipped) text, else the status. */
    static String errorMessage(int status, String text) {
        JsonNode n = Json.tryParse(text);
        if (n != null && n.isObject() && n.hasNonNull("error") && !n.get("error").asText().isBlank()) {
            return clip(n.get("error").asText().strip());
        }
        return text == null || text.isBlank() ? "HTTP " + status : clip(text.strip());
    }

    static String clip(String text) {
        return text.length() <= 300 ? text : text.substring(0, 300) + "...";
    }
}
