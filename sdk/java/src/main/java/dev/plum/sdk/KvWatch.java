package dev.plum.sdk;

import java.time.Duration;
import java.util.concurrent.CompletableFuture;

/**
 * Changes under a namespace/prefix after an index: call {@link #next()} (or {@link #nextAsync()})
 * for each. Resumable: {@link #index()} is where it stands, and a new watch from there misses
 * nothing. A long poll that fails on one replica is passed to another, from the same index; an
 * answer below the watch's index (a lagging replica) is not a change.
 */
public final class KvWatch {
    private final Transport t;
    private final String ns;
    private final String prefix;
    private final Duration wait;
    private volatile long index;

    KvWatch(Transport t, String ns, String prefix, long index, Duration wait) {
        this.t = t;
        this.ns = ns;
        this.prefix = prefix;
        this.index = index;
        this.wait = wait;
    }

    public long index() {
        return index;
    }

    /**
     * Waits for the next change (long polls, renewed until one comes). Throws when no replica
     * answers within a poll's deadline; calling again resumes from {@link #index()}.
     */
    public KvChange next() {
        while (true) {
            KvChange c = Kv.readChange(t.send(Kv.watchRequest(ns, prefix, index, wait)), index);
            if (c != null) {
                index = c.index();
                return c;
            }
        }
    }

    /** {@link #next()} without blocking a thread. */
    public CompletableFuture<KvChange> nextAsync() {
        return t.sendAsync(Kv.watchRequest(ns, prefix, index, wait)).thenCompose(a -> {
            KvChange c = Kv.readChange(a, index);
            if (c != null) {
                index = c.index();
                return CompletableFuture.completedFuture(c);
            }
            return nextAsync();
        });
    }
}
