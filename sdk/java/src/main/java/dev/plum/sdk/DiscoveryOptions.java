package dev.plum.sdk;

import java.time.Duration;

/** Settings of the discovery cache. */
public final class DiscoveryOptions {
    private final Duration watchWait;
    private final Duration maxStaleness;

    /**
     * @param watchWait    how long the server holds one watch request open when nothing changes
     * @param maxStaleness serve the last known endpoints at most this long after the cluster last
     *                     confirmed them ({@code null}: for ever)
     */
    public DiscoveryOptions(Duration watchWait, Duration maxStaleness) {
        this.watchWait = watchWait;
        this.maxStaleness = maxStaleness;
    }

    /** A 10 s watch wait, 5 min maximum staleness. */
    public static DiscoveryOptions defaults() {
        return new DiscoveryOptions(Duration.ofSeconds(10), Duration.ofMinutes(5));
    }

    public Duration watchWait() {
        return watchWait;
    }

    public Duration maxStaleness() {
        return maxStaleness;
    }
}
