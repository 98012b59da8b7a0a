package dev.plum.sdk;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.logging.Level;
import java.util.logging.Logger;

/**
 * Register-and-heartbeat for services that no agent runs: register (declaring a TTL), heartbeat
 * in the background (a daemon thread) at the interval the cluster advises (a quarter of the TTL
 * until it does), register again what the cluster says it forgot, deregister on {@link #close()}.
 * All instances of one registrar go in one batch request per interval.
 */
public final class Registrar implements AutoCloseable {
    private static final Logger LOG = Logger.getLogger(Registrar.class.getName());
    public static final Duration DEFAULT_TTL = Duration.ofSeconds(10);

    private final Transport t;
    private final Duration ttl;
    private volatile long intervalNanos;
    private final Map<String, ObjectNode> held = new LinkedHashMap<>();
    private final Thread thread;
    private volatile boolean closed;

    Registrar(Transport t, Duration ttl) {
        this.t = t;
        this.ttl = ttl;
        this.intervalNanos = intervalFor(ttl).toNanos();
        this.thread = new Thread(this::loop, "plum-registrar");
        this.thread.setDaemon(true);
        this.thread.start();
    }

    /** Four heartbeats per TTL, so three may be lost before the instance expires. */
    static Duration intervalFor(Duration ttl) {
        return Duration.ofNanos(Math.max(ttl.toNanos() / 4, TimeUnit.MILLISECONDS.toNanos(50)));
    }

    static ApiRequest registerRequest(List<ObjectNode> bodies) {
        ObjectNode b = Json.object();
        b.putArray("items").addAll(bodies);
        return ApiRequest.write("POST", "/v1/services/register/batch", Json.encode(b), true);
    }

    static ApiRequest heartbeatRequest(List<ObjectNode> bodies, Duration interval) {
        ObjectNode b = Json.object();
        ArrayNode items = b.putArray("items");
        for (ObjectNode o : bodies) {
            items.addObject().put("instanceId", o.get("instanceId").asText()).put("ttlMs", o.get("ttlMs").asLong());
        }
        Duration deadline = interval.compareTo(Duration.ofMillis(500)) > 0 ? interval : Duration.ofMillis(500);
        return ApiRequest.write("POST", "/v1/services/heartbeat/batch", Json.encode(b), true).withDeadline(deadline);
    }

    static ApiRequest deregisterRequest(String instanceId) {
        return ApiRequest.write("DELETE", "/v1/services?instanceId=" + Kv.seg(instanceId), null, true);
    }

    /** Takes the cluster's advice; returns the ids it says it does not know. */
    List<String> follow(JsonNode answer) {
        List<String> unknown = new ArrayList<>();
        if (answer != null && answer.isObject()) {
            JsonNode ms = answer.get("heartbeatIntervalMs");
            if (ms != null && ms.canConvertToLong() && ms.asLong() > 0) {
                intervalNanos = TimeUnit.MILLISECONDS.toNanos(ms.asLong());
            }
            JsonNode u = answer.get("unknown");
            if (u != null && u.isArray()) {
                u.forEach(x -> unknown.add(x.asText()));
            }
        }
        return unknown;
    }

    /** The heartbeat interval in force. */
    public Duration interval() {
        return Duration.ofNanos(intervalNanos);
    }

    public synchronized List<String> instanceIds() {
        return new ArrayList<>(held.keySet());
    }

    private List<ObjectNode> bodies(Instance... instances) {
        List<ObjectNode> bodies = new ArrayList<>();
        for (Instance i : instances) {
            bodies.add(i.body(ttl));
        }
        return bodies;
    }

    private synchronized void keep(List<ObjectNode> bodies) {
        for (ObjectNode b : bodies) {
            held.put(b.get("instanceId").asText(), b);
        }
    }

    private synchronized List<ObjectNode> snapshot() {
        return new ArrayList<>(held.values());
    }

    private synchronized List<ObjectNode> again(List<String> ids) {
        List<ObjectNode> out = new ArrayList<>();
        for (String id : ids) {
            if (held.containsKey(id)) {
                out.add(held.get(id));
            }
        }
        return out;
    }

    /** Registers the instances (one batch) and heartbeats them from now on. */
    public void register(Instance... instances) {
        List<ObjectNode> bodies = bodies(instances);
        follow(t.send(registerRequest(bodies)).json());
        keep(bodies);
    }

    public CompletableFuture<Void> registerAsync(Instance... instances) {
        List<ObjectNode> bodies = bodies(instances);
        return t.sendAsync(registerRequest(bodies)).thenAccept(a -> {
            follow(a.json());
            keep(bodies);
        });
    }

    /** Stops heartbeating {@code instanceId} and removes it from the cluster. */
    public void deregister(String instanceId) {
        synchronized (this) {
            held.remove(instanceId);
        }
        t.send(deregisterRequest(instanceId));
    }

    private void loop() {
        while (!closed) {
            try {
                TimeUnit.NANOSECONDS.sleep(intervalNanos);
            } catch (InterruptedException e) {
                return;
            }
            List<ObjectNode> bodies = snapshot();
            if (bodies.isEmpty() || closed) {
                continue;
            }
            try {
                List<ObjectNode> again = again(follow(t.send(heartbeatRequest(bodies, interval())).json()));
                if (!again.isEmpty()) {
                    LOG.info(() -> "the cluster forgot " + again.size() + " instance(s); registering them again");
                    follow(t.send(registerRequest(again)).json());
                }
            } catch (PlumException e) {
                if (closed) {
                    return;
                }
                LOG.log(Level.WARNING, "heartbeat of " + bodies.size() + " instance(s) not acknowledged: "
                        + e.getMessage());
            }
        }
    }

    /**
     * Stops heartbeating and deregisters every instance (the first error is thrown after all were
     * tried). Closing twice does nothing.
     */
    @Override
    public void close() {
        if (closed) {
            return;
        }
        closed = true;
        thread.interrupt();
        try {
            thread.join(5000);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        PlumException first = null;
        for (String id : instanceIds()) {
            try {
                deregister(id);
            } catch (PlumException e) {
                first = first == null ? e : first;
            }
        }
        if (first != null) {
            throw first;
        }
    }

    boolean threadAlive() {
        return thread.isAlive();
    }
}
