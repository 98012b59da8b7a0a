package dev.plum.sdk;

import com.fasterxml.jackson.databind.node.ObjectNode;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;

/** One instance and the endpoint it serves ({@code /v1/services/register} body). Immutable. */
public final class Instance {
    final String instanceId;
    final String service;
    final int port;
    final String ip;
    final String nodeId;
    final String protocol;
    final String version;
    final Map<String, String> labels;
    final Duration ttl;
    final List<String> upstreams;

    private Instance(String instanceId, String service, int port, String ip, String nodeId, String protocol,
                     String version, Map<String, String> labels, Duration ttl, List<String> upstreams) {
        this.instanceId = instanceId;
        this.service = service;
        this.port = port;
        this.ip = ip;
        this.nodeId = nodeId;
        this.protocol = protocol;
        this.version = version;
        this.labels = Map.copyOf(labels);
        this.ttl = ttl;
        this.upstreams = List.copyOf(upstreams);
    }

    /** An HTTP endpoint on 127.0.0.1, no version, no labels, the registrar's TTL. */
    public static Instance of(String instanceId, String service, int port) {
        return new Instance(instanceId, service, port, "127.0.0.1", null, "http", "", Map.of(), null, List.of());
    }

    public Instance ip(String ip) {
        return new Instance(instanceId, service, port, ip, nodeId, protocol, version, labels, ttl, upstreams);
    }

    public Instance nodeId(String nodeId) {
        return new Instance(instanceId, service, port, ip, nodeId, protocol, version, labels, ttl, upstreams);
    }

    public Instance protocol(String protocol) {
        return new Instance(instanceId, service, port, ip, nodeId, protocol, version, labels, ttl, upstreams);
    }

    public Instance version(String version) {
        return new Instance(instanceId, service, port, ip, nodeId, protocol, version, labels, ttl, upstreams);
    }

    public Instance label(String key, String value) {
        Map<String, String> l = new TreeMap<>(labels);
        l.put(key, value);
        return new Instance(instanceId, service, port, ip, nodeId, protocol, version, l, ttl, upstreams);
    }

    /** The TTL this instance declares (the registrar's when not set). */
    public Instance ttl(Duration ttl) {
        return new Instance(instanceId, service, port, ip, nodeId, protocol, version, labels, ttl, upstreams);
    }

    /** Services this instance depends on: edges of the cluster's topology ({@code GET /v1/topology}). */
    public Instance upstreams(String... services) {
        return new Instance(instanceId, service, port, ip, nodeId, protocol, version, labels, ttl, List.of(services));
    }

    public String instanceId() {
        return instanceId;
    }

    ObjectNode body(Duration defaultTtl) {
        ObjectNode b = Json.object().put("instanceId", instanceId).put("ip", ip);
        ObjectNode e = b.putArray("endpoints").addObject().put("serviceName", service).put("port", port)
                .put("protocol", protocol).put("version", version);
        ObjectNode l = e.putObject("labels");
        labels.forEach(l::put);
        b.put("ttlMs", (ttl != null ? ttl : defaultTtl).toMillis());
        if (nodeId != null && !nodeId.isEmpty()) {
            b.put("nodeId", nodeId);
        }
        if (!upstreams.isEmpty()) {
            upstreams.forEach(b.putArray("upstreams")::add);
        }
        return b;
    }
}
