package dev.plum.sdk;

import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Deque;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.function.LongSupplier;

/**
 * What the transport knows across calls: replicas, leader, the replica that answered last,
 * breakers. Thread-safe; shared by every call of one client. No I/O.
 */
final class TransportState {
    static final String LEADER_ADDR = "x-plum-leader-addr";

    final List<String> urls;
    final Options options;
    final LongSupplier clock;
    final Random rng;
    final Breaker[] breakers;
    final String auth;
    private volatile int leader = -1;
    private volatile int last;

    TransportState(List<String> urls, Options options, LongSupplier clock, Random rng) {
        List<String> clean = new ArrayList<>();
        for (String u : urls) {
            String s = u.strip();
            while (s.endsWith("/")) {
                s = s.substring(0, s.length() - 1);
            }
            if (s.isEmpty()) {
                continue;
            }
            if (!(s.startsWith("http://") || s.startsWith("https://"))) {
                throw new PlumException.ConfigError("controller address `" + s + "` needs http:// or https://");
            }
            clean.add(s);
        }
        this.urls = List.copyOf(clean);
        this.options = options;
        this.clock = clock;
        this.rng = rng;
        this.breakers = new Breaker[this.urls.size()];
        for (int i = 0; i < breakers.length; i++) {
            breakers[i] = new Breaker();
        }
        String token = options.token() == null ? "" : options.token().strip();
        if (token.chars().anyMatch(Character::isWhitespace)) {
            throw new PlumException.ConfigError("the token is not valid (it holds white space)");
        }
        this.auth = token.isEmpty() ? null : "Bearer " + token;
    }

    /**
     * Replicas to try, first to try first: for writes the leader first, then the one that answered
     * last, then the rest; replicas whose breaker is open at the end.
     */
    Deque<Integer> plan(boolean toLeader) {
        int n = urls.size();
        int from = Math.floorMod(last, n);
        List<Integer> order = new ArrayList<>(n);
        for (int i = 0; i < n; i++) {
            order.add((from + i) % n);
        }
        int l = leader;
        if (toLeader && l >= 0 && l < n) {
            order.remove(Integer.valueOf(l));
            order.add(0, l);
        }
        long now = clock.getAsLong();
        Deque<Integer> closed = new ArrayDeque<>(n);
        List<Integer> opened = new ArrayList<>();
        for (int i : order) {
            if (breakers[i].allows(options.breaker(), now)) {
                closed.addLast(i);
            } else {
                opened.add(i);
            }
        }
        closed.addAll(opened);
        return closed;
    }

    /** Learns the leader from an answer's headers (lower-case names); returns it when it is one of ours, else -1. */
    int learn(Map<String, String> headers) {
        String addr = headers.get(LEADER_ADDR);
        if (addr == null || addr.isBlank()) {
            return -1;
        }
        String a = addr.strip();
        while (a.endsWith("/")) {
            a = a.substring(0, a.length() - 1);
        }
        int i = urls.indexOf(a);
        if (i >= 0) {
            leader = i;
        }
        return i;
    }

    int leader() {
        return leader;
    }

    /** The leader's URL as last learnt, or {@code null}. */
    String leaderUrl() {
        int l = leader;
        return l >= 0 ? urls.get(l) : null;
    }

    void answeredBy(int replica) {
        last = replica;
    }

    int last() {
        return last;
    }
}
