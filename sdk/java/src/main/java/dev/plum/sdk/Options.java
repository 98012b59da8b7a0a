package dev.plum.sdk;

import java.time.Duration;
import java.util.Objects;

/** Transport settings. Immutable; build with {@link #builder()}. */
public final class Options {
    private final Duration attemptTimeout;
    private final Duration deadline;
    private final Duration connectTimeout;
    private final Backoff backoff;
    private final BreakerPolicy breaker;
    private final String token;

    private Options(Builder b) {
        this.attemptTimeout = b.attemptTimeout;
        this.deadline = b.deadline;
        this.connectTimeout = b.connectTimeout;
        this.backoff = b.backoff;
        this.breaker = b.breaker;
        this.token = b.token;
    }

    public static Builder builder() {
        return new Builder();
    }

    public static Options defaults() {
        return builder().build();
    }

    /** How long one attempt at one replica may take (2 s). */
    public Duration attemptTimeout() {
        return attemptTimeout;
    }

    /** How long a call may take in all, retries included (5 s). */
    public Duration deadline() {
        return deadline;
    }

    /** How long connecting to a replica may take (500 ms). */
    public Duration connectTimeout() {
        return connectTimeout;
    }

    public Backoff backoff() {
        return backoff;
    }

    public BreakerPolicy breaker() {
        return breaker;
    }

    /** Sent as {@code Authorization: Bearer <token>}; {@code null} or blank: none. */
    public String token() {
        return token;
    }

    public Builder toBuilder() {
        return new Builder().attemptTimeout(attemptTimeout).deadline(deadline).connectTimeout(connectTimeout)
                .backoff(backoff).breaker(breaker).token(token);
    }

    @Override
    public String toString() { // never shows the token
        return "Options(attemptTimeout=" + attemptTimeout.toMillis() + "ms, deadline=" + deadline.toMillis()
                + "ms, connectTimeout=" + connectTimeout.toMillis() + "ms, " + backoff + ", " + breaker + ", token="
                + (token == null || token.isBlank() ? "none" : "<redacted>") + ")";
    }

    public static final class Builder {
        private Duration attemptTimeout = Duration.ofSeconds(2);
        private Duration deadline = Duration.ofSeconds(5);
        private Duration connectTimeout = Duration.ofMillis(500);
        private Backoff backoff = Backoff.defaults();
        private BreakerPolicy breaker = BreakerPolicy.defaults();
        private String token;

        public Builder attemptTimeout(Duration d) {
            this.attemptTimeout = positive(d, "attemptTimeout");
            return this;
        }

        public Builder deadline(Duration d) {
            this.deadline = positive(d, "deadline");
            return this;
        }

        public Builder connectTimeout(Duration d) {
            this.connectTimeout = positive(d, "connectTimeout");
            return this;
        }

        public Builder backoff(Backoff b) {
            this.backoff = Objects.requireNonNull(b);
            return this;
        }

        public Builder breaker(BreakerPolicy b) {
            this.breaker = Objects.requireNonNull(b);
            return this;
        }

        public Builder token(String token) {
            this.token = token;
            return this;
        }

        public Options build() {
            return new Options(this);
        }

        private static Duration positive(Duration d, String name) {
            if (d == null || d.isNegative() || d.isZero()) {
                throw new IllegalArgumentException(name + " must be positive");
            }
            return d;
        }
    }
}
