package dev.plum.sdk;

import java.util.Map;
import java.util.TreeMap;

/**
 * Filters over a service's cached endpoints: version (exact, or a semver range such as
 * {@code ^1.2} or {@code >=1.0, <2.0}), protocol, and labels (every one, with that value).
 */
public final class Query {
    private final String version;
    private final VersionFilter versionFilter;
    private final String protocol;
    private final Map<String, String> labels;

    private Query(String version, String protocol, Map<String, String> labels) {
        this.version = version;
        this.versionFilter = version == null ? null : new VersionFilter(version);
        this.protocol = protocol;
        this.labels = Map.copyOf(labels);
    }

    public static Query any() {
        return new Query(null, null, Map.of());
    }

    /** Endpoints of this version (exact) or in this semver range; a malformed range throws. */
    public Query version(String v) {
        return new Query(v, protocol, labels);
    }

    public Query protocol(String p) {
        return new Query(version, p, labels);
    }

    public Query label(String key, String value) {
        Map<String, String> l = new TreeMap<>(labels);
        l.put(key, value);
        return new Query(version, protocol, l);
    }

    public boolean matches(Endpoint e) {
        return (versionFilter == null || versionFilter.matches(e.version()))
                && (protocol == null || protocol.equals(e.protocol()))
                && labels.entrySet().stream().allMatch(kv -> kv.getValue().equals(e.labels().get(kv.getKey())));
    }

    @Override
    public String toString() {
        return "Query(version=" + version + ", protocol=" + protocol + ", labels=" + labels + ")";
    }
}
