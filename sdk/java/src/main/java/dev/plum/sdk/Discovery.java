package dev.plum.sdk;

import com.fasterxml.jackson.databind.JsonNode;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.OptionalLong;
import java.util.Random;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.TimeUnit;
import java.util.stream.Collectors;

/**
 * Discovery through a local cache kept fresh by a watch, not by a TTL.
 *
 * <p>The first lookup of a service fetches it and starts a background long poll
 * ({@code GET /v1/discovery?watch=true&index=N}, one daemon thread per service) that replaces the
 * cached endpoints when the cluster's answer changes. Lookups are served from memory. Rules (pure
 * functions {@link #merge}, {@link #confirm}, {@link #judge}, shared with the Python SDK):
 * <ul>
 * <li>an answer with an index below the cached one is older than what we hold (a lagging
 * replica): ignored, the cache never goes back in time;
 * <li>an empty answer never wipes a non-empty cache by itself: the removal is confirmed first by a
 * linearizable read ({@code consistent=true}), and only that read's answer is applied;
 * <li>while the cluster cannot be reached the last known endpoints are served, marked
 * {@code stale}, up to {@code maxStaleness}; past it a lookup throws
 * {@link PlumException.Unreachable} rather than hand out endpoints nobody vouched for lately.
 * </ul>
 */
public final class Discovery implements AutoCloseable {
    private static final Backoff BACKOFF = new Backoff(Duration.ofMillis(50), Duration.ofSeconds(2));

    /** The cached state of one service (immutable). */
    static final class Snapshot {
        final List<Endpoint> endpoints;
        final long index;
        final long confirmed; // nanoTime when the cluster last confirmed this answer
        final boolean contactLost;

        Snapshot(List<Endpoint> endpoints, long index, long confirmed, boolean contactLost) {
            this.endpoints = List.copyOf(endpoints);
            this.index = index;
            this.confirmed = confirmed;
            this.contactLost = contactLost;
        }

        Snapshot lostContact() {
            return new Snapshot(endpoints, index, confirmed, true);
        }
    }

    /** What {@link #merge} made of an answer: the new snapshot, or a request to confirm an empty answer first. */
    static final class Merged {
        final Snapshot snapshot;
        final boolean needsConfirm;

        Merged(Snapshot snapshot, boolean needsConfirm) {
            this.snapshot = snapshot;
            this.needsConfirm = needsConfirm;
        }
    }

    static Merged merge(Snapshot s, List<Endpoint> endpoints, OptionalLong index, long now) {
        if (index.isPresent() && index.getAsLong() < s.index) {
            return new Merged(s, false); // older than what we hold: a lagging replica
        }
        if (endpoints.isEmpty() && !s.endpoints.isEmpty()) {
            return new Merged(s, true);
        }
        return new Merged(new Snapshot(endpoints, Math.max(index.orElse(0), s.index), now, false), false);
    }

    /** Applies the answer of the linearizable read that checks an empty answer. */
    static Snapshot confirm(Snapshot s, List<Endpoint> endpoints, OptionalLong index, long now) {
        if (index.isPresent() && index.getAsLong() < s.index) {
            return s;
        }
        return new Snapshot(endpoints, Math.max(index.orElse(0), s.index), now, false);
    }

    static Discovered judge(String service, Snapshot s, DiscoveryOptions o, long now) {
        long age = Math.max(0, now - s.confirmed);
        // A long poll answers at least every watchWait: silence well beyond it means the replica
        // is not answering even if no error was seen yet (black-holed).
        boolean stale = s.contactLost || age > o.watchWait().toNanos() * 2 + TimeUnit.SECONDS.toNanos(1);
        if (stale && o.maxStaleness() != null && age > o.maxStaleness().toNanos()) {
            throw new PlumException.Unreachable(String.format(java.util.Locale.ROOT,
                    "the cluster has not confirmed the endpoints of `%s` for %.1f s (more than the maximum staleness)",
                    service, age / 1e9));
        }
        return new Discovered(s.endpoints, stale, Duration.ofNanos(age));
    }

    static ApiRequest fetchRequest(String service, long after, Duration wait, boolean consistent) {
        return fetchRequest(service, after, wait, consistent, null);
    }

    static ApiRequest fetchRequest(String service, long after, Duration wait, boolean consistent, String clientService) {
        String q = "service=" + Kv.seg(service) + (consistent ? "&consistent=true" : "")
                + (clientService == null || clientService.isEmpty() ? "" : "&clientService=" + Kv.seg(clientService));
        if (after < 0) {
            return ApiRequest.get("/v1/discovery?" + q).withAttemptTimeout(Duration.ofSeconds(3))
                    .withDeadline(Duration.ofSeconds(6));
        }
        return ApiRequest.get("/v1/discovery?" + q + "&watch=true&index=" + after + "&timeoutMs=" + wait.toMillis())
                .withAttemptTimeout(wait.plusSeconds(3)).withDeadline(wait.plusSeconds(6)).withMaxRounds(1);
    }

    static List<Endpoint> readEndpoints(Answer a) {
        JsonNode n = a.json();
        List<Endpoint> out = new ArrayList<>();
        if (n != null && n.isArray()) {
            n.forEach(d -> out.add(Endpoint.fromJson(d)));
        }
        return out;
    }

    private static Discovered filter(Discovered d, Query q) {
        if (q == null) {
            return d;
        }
        return new Discovered(d.endpoints().stream().filter(q::matches).collect(Collectors.toList()), d.stale(), d.age());
    }

    // ---- the cache --------------------------------------------------------------------------

    private final Transport t;
    private final DiscoveryOptions options;
    private final Map<String, Snapshot> snapshots = new ConcurrentHashMap<>();
    private final Map<String, Thread> threads = new ConcurrentHashMap<>();
    private final Random rng = new Random();
    private volatile boolean closed;

    Discovery(Transport t, DiscoveryOptions options) {
        this.t = t;
        this.options = options;
    }

    /** Every cached endpoint of {@code service}. */
    public Discovered endpoints(String service) {
        return judge(service, snapshot(service), options, System.nanoTime());
    }

    /** The cached endpoints of {@code service} that pass {@code query} ({@code null}: all). */
    public Discovered find(String service, Query query) {
        return filter(endpoints(service), query);
    }

    /** {@link #find} without blocking a thread on the first fetch. */
    public CompletableFuture<Discovered> findAsync(String service, Query query) {
        if (closed) {
            return CompletableFuture.failedFuture(new PlumException("the client is closed"));
        }
        Snapshot s = snapshots.get(service);
        CompletableFuture<Snapshot> got = s != null ? CompletableFuture.completedFuture(s)
                : t.sendAsync(fetchRequest(service, -1, Duration.ZERO, false, options.clientService()))
                        .thenApply(a -> install(service, a));
        return got.thenApply(snap -> filter(judge(service, snap, options, System.nanoTime()), query));
    }

    private Snapshot snapshot(String service) {
        if (closed) {
            throw new PlumException("the client is closed");
        }
        Snapshot s = snapshots.get(service);
        if (s != null) {
            return s;
        }
        return install(service, t.send(fetchRequest(service, -1, Duration.ZERO, false, options.clientService())));
    }

    private Snapshot install(String service, Answer a) {
        Snapshot fresh = new Snapshot(readEndpoints(a), a.index().orElse(0), System.nanoTime(), false);
        synchronized (this) {
            Snapshot s = snapshots.get(service);
            if (s != null) { // another caller started it meanwhile
                return s;
            }
            if (closed) {
                throw new PlumException("the client is closed");
            }
            snapshots.put(service, fresh);
            Thread th = new Thread(() -> keepFresh(service), "plum-discovery-" + service);
            th.setDaemon(true);
            threads.put(service, th);
            th.start();
            return fresh;
        }
    }

    private void keepFresh(String service) {
        int failures = 0;
        while (!closed) {
            Snapshot s = snapshots.get(service);
            try {
                Answer a = t.send(fetchRequest(service, s.index, options.watchWait(), false, options.clientService()));
                Merged m = merge(s, readEndpoints(a), a.index(), System.nanoTime());
                Snapshot s2 = m.snapshot;
                if (m.needsConfirm) {
                    Answer c = t.send(fetchRequest(service, -1, Duration.ZERO, true));
                    s2 = confirm(s, readEndpoints(c), c.index(), System.nanoTime());
                }
                snapshots.put(service, s2);
                failures = 0;
                if (m.needsConfirm || s2 == s) {
                    // Nothing new came of that answer: do not spin on a replica answering at once.
                    pause(BACKOFF.delayNanos(0, rng));
                }
            } catch (RuntimeException e) {
                if (closed) {
                    return;
                }
                Snapshot cur = snapshots.get(service);
                if (e instanceof PlumException && cur != null && !cur.contactLost) {
                    snapshots.put(service, cur.lostContact());
                }
                pause(BACKOFF.delayNanos(failures, rng));
                failures++;
            }
        }
    }

    private void pause(long nanos) {
        try {
            TimeUnit.NANOSECONDS.sleep(nanos);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            closed = true;
        }
    }

    /** Stops every watch thread and waits (at most 5 s) until they have ended. */
    @Override
    public void close() {
        closed = true;
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(5);
        for (Thread th : threads.values()) {
            th.interrupt();
        }
        for (Thread th : threads.values()) {
            try {
                th.join(Math.max(1, TimeUnit.NANOSECONDS.toMillis(deadline - System.nanoTime())));
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                return;
            }
        }
    }

    /** Watch threads still running (0 after {@link #close()}). */
    int liveThreads() {
        return (int) threads.values().stream().filter(Thread::isAlive).count();
    }
}
