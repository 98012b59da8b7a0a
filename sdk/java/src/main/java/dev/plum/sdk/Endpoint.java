package dev.plum.sdk;

import com.fasterxml.jackson.databind.JsonNode;
import java.util.Map;
import java.util.Objects;
import java.util.TreeMap;

/** One endpoint of a service instance, as discovery answers it. */
public final class Endpoint {
    private final String serviceName;
    private final String instanceId;
    private final String nodeId;
    private final String ip;
    private final int port;
    private final String protocol;
    private final String version;
    private final Map<String, String> labels;
    private final boolean healthy;
    private final long lastSeen;

    public Endpoint(String serviceName, String instanceId, String nodeId, String ip, int port, String protocol,
                    String version, Map<String, String> labels, boolean healthy, long lastSeen) {
        this.serviceName = serviceName;
        this.instanceId = instanceId;
        this.nodeId = nodeId;
        this.ip = ip;
        this.port = port;
        this.protocol = protocol;
        this.version = version;
        this.labels = Map.copyOf(labels);
        this.healthy = healthy;
        this.lastSeen = lastSeen;
    }

    static Endpoint fromJson(JsonNode d) {
        Map<String, String> labels = new TreeMap<>();
        JsonNode l = d.get("labels");
        if (l != null && l.isObject()) {
            l.fields().forEachRemaining(e -> labels.put(e.getKey(), e.getValue().asText()));
        }
        JsonNode h = d.get("healthy");
        return new Endpoint(Json.asText(d, "serviceName", ""), Json.asText(d, "instanceId", ""),
                Json.asText(d, "nodeId", ""), Json.asText(d, "ip", ""), (int) Json.asLong(d, "port"),
                Json.asText(d, "protocol", ""), Json.asText(d, "version", ""), labels,
                h == null || h.isNull() || h.asBoolean(), Json.asLong(d, "lastSeen"));
    }

    public String serviceName() {
        return serviceName;
    }

    public String instanceId() {
        return instanceId;
    }

    public String nodeId() {
        return nodeId;
    }

    public String ip() {
        return ip;
    }

    public int port() {
        return port;
    }

    public String protocol() {
        return protocol;
    }

    public String version() {
        return version;
    }

    public Map<String, String> labels() {
        return labels;
    }

    public boolean healthy() {
        return healthy;
    }

    public long lastSeen() {
        return lastSeen;
    }

    /** {@code ip:port}. */
    public String address() {
        return ip + ":" + port;
    }

    @Override
    public boolean equals(Object o) {
        if (!(o instanceof Endpoint)) {
            return false;
        }
        Endpoint e = (Endpoint) o;
        return port == e.port && healthy == e.healthy && lastSeen == e.lastSeen && serviceName.equals(e.serviceName)
                && instanceId.equals(e.instanceId) && nodeId.equals(e.nodeId) && ip.equals(e.ip)
                && protocol.equals(e.protocol) && version.equals(e.version) && labels.equals(e.labels);
    }

    @Override
    public int hashCode() {
        return Objects.hash(serviceName, instanceId, ip, port, protocol, version);
    }

    @Override
    public String toString() {
        return "Endpoint(" + serviceName + " " + instanceId + " " + protocol + "://" + address() + " " + version + ")";
    }
}
