package dev.plum.sdk;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.time.Duration;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.OptionalLong;
import java.util.Random;
import java.util.Set;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;

/** Filters, the discovery cache's rules, balancing, KV request shapes: pure. */
class ModelTest {
    static Endpoint ep(String id, String version, String protocol, Map<String, String> labels) {
        return new Endpoint("web", id, "n1", "10.0.0." + id.length(), 80, protocol, version, labels, true, 0);
    }

    @Test
    void versionFilters() {
        assertTrue(new VersionFilter("v1").matches("v1"));
        assertFalse(new VersionFilter("v1").matches("v1.0.0"));
        VersionFilter caret = new VersionFilter("^1.2");
        assertTrue(caret.matches("1.2.0") && caret.matches("1.9.3"));
        assertFalse(caret.matches("2.0.0") || caret.matches("1.1.9") || caret.matches("1.3.0-rc.1"));
        VersionFilter tilde = new VersionFilter("~1.4.0");
        assertTrue(tilde.matches("1.4.7"));
        assertFalse(tilde.matches("1.5.0"));
        VersionFilter range = new VersionFilter(">=1.0, <2.0");
        assertTrue(range.matches("1.99.0"));
        assertFalse(range.matches("2.0.0") || range.matches("not-semver"));
        assertTrue(new VersionFilter("^0.2.3").matches("0.2.9"));
        assertFalse(new VersionFilter("^0.2.3").matches("0.3.0"));
        assertTrue(new VersionFilter(">=1.0.0-beta.2").matches("1.0.0-beta.11"));
        assertFalse(new VersionFilter(">=1.0.0-beta.2").matches("1.0.0-beta.1"));
        assertTrue(new VersionFilter("*").matches("3.1.4"));
        assertThrows(IllegalArgumentException.class, () -> new VersionFilter("^x.y"));
    }

    @Test
    void queries() {
        Endpoint a = ep("a", "1.2.0", "http", Map.of("zone", "a"));
        Endpoint b = ep("bb", "2.0.0", "grpc", Map.of("zone", "b"));
        assertTrue(Query.any().matches(a));
        assertTrue(Query.any().version("^1").protocol("http").label("zone", "a").matches(a));
        assertFalse(Query.any().version("^1").matches(b));
        assertFalse(Query.any().label("zone", "a").matches(b));
        assertFalse(Query.any().protocol("http").matches(b));
    }

    @Test
    void discoveryCacheRules() {
        Endpoint a = ep("a", "1", "http", Map.of());
        long t0 = 1_000;
        Discovery.Snapshot s = new Discovery.Snapshot(List.of(a), 20, t0, false);
        Discovery.Merged older = Discovery.merge(s, List.of(), OptionalLong.of(15), t0 + 5);
        assertSame(s, older.snapshot, "an older index is ignored");
        assertFalse(older.needsConfirm);
        Discovery.Merged empty = Discovery.merge(s, List.of(), OptionalLong.of(20), t0 + 5);
        assertSame(s, empty.snapshot);
        assertTrue(empty.needsConfirm, "an empty answer over a non-empty cache must be confirmed");
        Discovery.Snapshot removed = Discovery.confirm(s, List.of(), OptionalLong.of(21), t0 + 6);
        assertTrue(removed.endpoints.isEmpty());
        assertEquals(21, removed.index);
        Discovery.Merged newer = Discovery.merge(s, List.of(a, a), OptionalLong.of(22), t0 + 7);
        assertEquals(2, newer.snapshot.endpoints.size());

        DiscoveryOptions o = new DiscoveryOptions(Duration.ofMillis(500), Duration.ofMillis(1500));
        assertFalse(Discovery.judge("web", s, o, t0 + TimeUnit.MILLISECONDS.toNanos(100)).stale());
        assertTrue(Discovery.judge("web", s.lostContact(), o, t0 + TimeUnit.MILLISECONDS.toNanos(100)).stale());
        assertTrue(Discovery.judge("web", s, o, t0 + TimeUnit.MILLISECONDS.toNanos(1000)).stale() == false);
        assertThrows(PlumException.Unreachable.class,
                () -> Discovery.judge("web", s.lostContact(), o, t0 + TimeUnit.MILLISECONDS.toNanos(1600)));
        assertTrue(Discovery.judge("web", s.lostContact(), new DiscoveryOptions(Duration.ofMillis(500), null),
                t0 + TimeUnit.HOURS.toNanos(1)).stale(), "no maximum staleness: served stale for ever");
    }

    @Test
    void balancers() {
        List<Endpoint> eps = List.of(ep("a", "1", "http", Map.of()), ep("bb", "1", "http", Map.of()),
                ep("ccc", "1", "http", Map.of()));
        Balancer rr = new Balancer(Balancer.Strategy.ROUND_ROBIN);
        assertEquals(List.of(eps.get(0), eps.get(1), eps.get(2), eps.get(0)),
                List.of(rr.pick(eps), rr.pick(eps), rr.pick(eps), rr.pick(eps)));
        Balancer random = new Balancer(Balancer.Strategy.RANDOM, new Random(3));
        Set<Endpoint> seen = new HashSet<>();
        for (int i = 0; i < 50; i++) {
            seen.add(random.pick(eps));
        }
        assertEquals(3, seen.size());
        Balancer p2c = new Balancer(Balancer.Strategy.P2C, new Random(5));
        try (Balancer.Tracked x = p2c.track(eps.get(0)); Balancer.Tracked y = p2c.track(eps.get(1))) {
            assertEquals(1, p2c.inFlight(eps.get(0)));
            for (int i = 0; i < 20; i++) {
                // Any two drawn include one of the idle ones unless both busy ones are drawn.
                Endpoint e = p2c.pick(eps);
                assertTrue(e == eps.get(2) || p2c.inFlight(e) == 1);
            }
        }
        assertEquals(0, p2c.inFlight(eps.get(0)));
        assertEquals(null, p2c.pick(List.of()));
    }

    @Test
    void kvRequests() {
        ApiRequest put = Kv.putRequest("app", "a/b c", "red", "string", 3L);
        assertEquals("/v1/kv/app/key/a%2Fb%20c", put.path());
        assertTrue(put.idempotent());
        String body = new String(put.body);
        assertTrue(body.contains("\"expectVersion\":3") && body.matches(".*\"requestId\":\"[0-9a-f]{32}\".*"), body);
        String other = new String(Kv.putRequest("app", "k", "red", "string", null).body);
        assertFalse(other.contains("expectVersion"));
        assertFalse(Kv.deleteRequest("app", "k", 2L).idempotent(), "a conditional delete is not blindly resent");
        assertTrue(Kv.deleteRequest("app", "k", null).idempotent());
        assertThrows(IllegalArgumentException.class, () -> Kv.putRequest("app", "k", "x", "float", null));
        assertEquals(Duration.ofMillis(50), Registrar.intervalFor(Duration.ofMillis(100)));
        assertEquals(Duration.ofMillis(250), Registrar.intervalFor(Duration.ofSeconds(1)));
    }
}
