package dev.plum.sdk;

import java.time.Duration;

/**
 * When a replica's circuit breaker opens: after {@code failures} consecutive failures, for
 * {@code coolDown} (doubling on every trip while it keeps failing, at most {@code maxCoolDown}).
 */
public final class BreakerPolicy {
    private final int failures;
    private final Duration coolDown;
    private final Duration maxCoolDown;

    public BreakerPolicy(int failures, Duration coolDown, Duration maxCoolDown) {
        if (failures < 1) {
            throw new IllegalArgumentException("breaker failures must be at least 1");
        }
        this.failures = failures;
        this.coolDown = coolDown;
        this.maxCoolDown = maxCoolDown;
    }

    public static BreakerPolicy defaults() {
        return new BreakerPolicy(3, Duration.ofMillis(500), Duration.ofSeconds(10));
    }

    public int failures() {
        return failures;
    }

    public Duration coolDown() {
        return coolDown;
    }

    public Duration maxCoolDown() {
        return maxCoolDown;
    }

    @Override
    public String toString() {
        return "BreakerPolicy(failures=" + failures + ", coolDown=" + coolDown.toMillis() + "ms, maxCoolDown="
                + maxCoolDown.toMillis() + "ms)";
    }
}
