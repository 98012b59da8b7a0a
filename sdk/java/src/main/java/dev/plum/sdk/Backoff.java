package dev.plum.sdk;

import java.time.Duration;
import java.util.Random;

/**
 * Exponential backoff with full jitter: a wait drawn uniformly from zero to
 * {@code base * 2^attempt} (capped at {@code max}), so clients that failed together do not come
 * back together.
 */
public final class Backoff {
    private final Duration base;
    private final Duration max;

    public Backoff(Duration base, Duration max) {
        if (base.isNegative() || max.isNegative()) {
            throw new IllegalArgumentException("backoff durations must not be negative");
        }
        this.base = base;
        this.max = max;
    }

    public static Backoff defaults() {
        return new Backoff(Duration.ofMillis(20), Duration.ofSeconds(1));
    }

    public Duration base() {
        return base;
    }

    public Duration max() {
        return max;
    }

    /** The upper bound of the wait after {@code attempt} failed rounds (0-based), in nanoseconds. */
    public long boundNanos(int attempt) {
        double b = base.toNanos() * Math.pow(2, Math.min(attempt, 20));
        return (long) Math.min(b, (double) max.toNanos());
    }

    /** A wait drawn uniformly from {@code [0, bound(attempt)]}, in nanoseconds. */
    public long delayNanos(int attempt, Random rng) {
        return (long) (rng.nextDouble() * boundNanos(attempt));
    }

    @Override
    public String toString() {
        return "Backoff(base=" + base.toMillis() + "ms, max=" + max.toMillis() + "ms)";
    }
}
