package dev.plum.sdk;

import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicLong;

/**
 * Choosing one endpoint among several: {@code RANDOM}, {@code ROUND_ROBIN}, or {@code P2C}
 * (power of two choices: the less busy of two drawn at random; wrap each request in
 * {@link #track} so the balancer counts it). Thread-safe; the Rust SDK's {@code balance.rs}.
 */
public final class Balancer {
    public enum Strategy { RANDOM, ROUND_ROBIN, P2C }

    /** A request counted in flight until closed (use with try-with-resources). */
    public interface Tracked extends AutoCloseable {
        @Override
        void close();
    }

    private final Strategy strategy;
    private final Random rng;
    private final AtomicLong next = new AtomicLong();
    private final Map<String, Integer> inFlight = new ConcurrentHashMap<>();

    public Balancer(Strategy strategy) {
        this(strategy, new Random());
    }

    Balancer(Strategy strategy, Random rng) {
        this.strategy = strategy;
        this.rng = rng;
    }

    /** One of {@code endpoints}, or {@code null} when there is none. */
    public Endpoint pick(List<Endpoint> endpoints) {
        int n = endpoints.size();
        if (n == 0) {
            return null;
        }
        switch (strategy) {
            case RANDOM:
                return endpoints.get(rng.nextInt(n));
            case ROUND_ROBIN:
                return endpoints.get((int) Math.floorMod(next.getAndIncrement(), (long) n));
            default:
                if (n == 1) {
                    return endpoints.get(0);
                }
                int a = rng.nextInt(n);
                int b = rng.nextInt(n - 1);
                if (b >= a) {
                    b++;
                }
                return inFlight(endpoints.get(a)) <= inFlight(endpoints.get(b)) ? endpoints.get(a) : endpoints.get(b);
        }
    }

    public int inFlight(Endpoint e) {
        return inFlight.getOrDefault(e.address(), 0);
    }

    /** Counts a request to {@code e} until the returned handle is closed. */
    public Tracked track(Endpoint e) {
        inFlight.merge(e.address(), 1, Integer::sum);
        return () -> {
            inFlight.computeIfPresent(e.address(), (k, v) -> v <= 1 ? null : v - 1);
        };
    }
}
