package dev.plum.sdk;

import java.time.Duration;

/** Settings of the discovery cache. */
public final class DiscoveryOptions {
    private final Duration watchWait;
    private final Duration maxStaleness;
    private final String clientService;

    /**
     * @param watchWait    how long the server holds one watch request open when nothing changes
     * @param maxStaleness serve the last known endpoints at most this long after the cluster last
     *                     confirmed them ({@code null}: for ever)
     */
    public DiscoveryOptions(Duration watchWait, Duration maxStaleness) {
        this(watchWait, maxStaleness, null);
    }

    /**
     * @param clientService the service this process serves ({@code null}: none), sent with lookups
     *                      ({@code clientService}) so the cluster's topology shows what it depends on
     */
    public DiscoveryOptions(Duration watchWait, Duration maxStaleness, String clientService) {
        this.watchWait = watchWait;
        this.maxStaleness = maxStaleness;
        this.clientService = clientService;
    }

    /** The same settings, naming the service this process serves. */
    public DiscoveryOptions withClientService(String clientService) {
        return new DiscoveryOptions(watchWait, maxStaleness, clientService);
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

    public String clientService() {
        return clientService;
    }
}
