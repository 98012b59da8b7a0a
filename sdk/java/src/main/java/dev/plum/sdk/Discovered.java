package dev.plum.sdk;

import java.time.Duration;
import java.util.List;

/** A discovery answer from the cache. */
public final class Discovered {
    private final List<Endpoint> endpoints;
    private final boolean stale;
    private final Duration age;

    Discovered(List<Endpoint> endpoints, boolean stale, Duration age) {
        this.endpoints = List.copyOf(endpoints);
        this.stale = stale;
        this.age = age;
    }

    public List<Endpoint> endpoints() {
        return endpoints;
    }

    /** True when the cluster could not confirm them lately (it is unreachable). */
    public boolean stale() {
        return stale;
    }

    /** Time since the cluster last confirmed them. */
    public Duration age() {
        return age;
    }

    @Override
    public String toString() {
        return "Discovered(" + endpoints.size() + " endpoint(s)" + (stale ? ", stale" : "") + ", age=" + age.toMillis()
                + "ms)";
    }
}
