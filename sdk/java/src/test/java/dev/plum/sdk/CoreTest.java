package dev.plum.sdk;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import org.junit.jupiter.api.Test;

/** The pure decision core, stepped by hand with a test clock: no sockets. */
class CoreTest {
    static final List<String> URLS = List.of("http://r0", "http://r1", "http://r2");
    final AtomicLong now = new AtomicLong(1_000_000_000L);

    TransportState state(Options o) {
        return new TransportState(URLS, o, now::get, new Random(7));
    }

    static Options opts() {
        return Options.builder().attemptTimeout(Duration.ofMillis(300)).deadline(Duration.ofSeconds(3))
                .backoff(new Backoff(Duration.ofMillis(10), Duration.ofMillis(100)))
                .breaker(new BreakerPolicy(3, Duration.ofMillis(500), Duration.ofSeconds(10))).token("tok").build();
    }

    static Decision.Answered answer(int status, String body, Map<String, String> headers) {
        return new Decision.Answered(status, headers, body);
    }

    static Map<String, String> leaderIs(int i) {
        return Map.of("x-plum-leader-addr", URLS.get(i), "x-plum-index", "7");
    }

    static ApiRequest put() {
        return ApiRequest.write("PUT", "/v1/kv/app/key/k", "{}".getBytes(), true);
    }

    static ApiRequest deploy() {
        return ApiRequest.write("POST", "/v1/deployments", "{}".getBytes(), false);
    }

    static Decision.Send send(Decision.Action a) {
        return assertInstanceOf(Decision.Send.class, a);
    }

    @Test
    void redirectIsFollowedAndTheLeaderLearnt() {
        TransportState t = state(opts());
        Decision d = new Decision(t, put());
        Decision.Send s = send(d.start());
        assertEquals(0, s.replica);
        assertEquals("1", s.headers.get("x-plum-redirect"));
        assertEquals("Bearer tok", s.headers.get("authorization"));
        String trace = s.headers.get("traceparent");
        assertTrue(trace.startsWith("00-" + d.traceId() + "-"));
        Decision.Send s2 = send(d.sent(answer(307, "{\"retryable\":true}", leaderIs(2))));
        assertEquals(2, s2.replica);
        assertEquals("http://r2/v1/kv/app/key/k", s2.url);
        assertTrue(s2.headers.get("traceparent").startsWith("00-" + d.traceId() + "-"));
        assertFalse(s2.headers.get("traceparent").equals(trace), "a span id per attempt");
        Decision.Done done = assertInstanceOf(Decision.Done.class, d.sent(answer(200, "{\"version\":1}", leaderIs(2))));
        assertEquals(7, done.answer.index().getAsLong());
        // The next write goes straight to the leader.
        assertEquals(2, send(new Decision(t, put()).start()).replica);
    }

    @Test
    void noLeaderBacksOffWithFullJitterThenGivesUpAtTheDeadline() {
        TransportState t = state(opts());
        Decision d = new Decision(t, put());
        Decision.Action a = d.start();
        int sends = 0;
        int sleeps = 0;
        while (a instanceof Decision.Send || a instanceof Decision.Sleep) {
            if (a instanceof Decision.Send) {
                sends++;
                now.addAndGet(TimeUnit.MILLISECONDS.toNanos(20));
                a = d.sent(answer(503, "{\"error\":\"no leader\",\"retryable\":true}", Map.of()));
            } else {
                long pause = ((Decision.Sleep) a).nanos;
                assertTrue(pause >= 0 && pause <= t.options.backoff().boundNanos(sleeps), "full jitter within the bound");
                sleeps++;
                now.addAndGet(pause);
                a = d.slept();
            }
        }
        Decision.Failed f = assertInstanceOf(Decision.Failed.class, a);
        assertInstanceOf(PlumException.Unreachable.class, f.error);
        assertTrue(sends >= 3 * sleeps && sleeps > 5, sends + " sends, " + sleeps + " sleeps");
    }

    @Test
    void aLostNonIdempotentWriteIsNeverResent() {
        Decision d = new Decision(state(opts()), deploy());
        send(d.start());
        Decision.Failed f = assertInstanceOf(Decision.Failed.class, d.sent(new Decision.Lost("timed out")));
        assertInstanceOf(PlumException.OutcomeUnknown.class, f.error);
        Decision d2 = new Decision(state(opts()), deploy());
        send(d2.start());
        f = assertInstanceOf(Decision.Failed.class, d2.sent(answer(503, "{\"outcomeUnknown\":true}", Map.of())));
        assertInstanceOf(PlumException.OutcomeUnknown.class, f.error);
    }

    @Test
    void aLostIdempotentWriteIsResentElsewhereAndEndsUnknownIfNoneAnswers() {
        Decision d = new Decision(state(opts()), put());
        assertEquals(0, send(d.start()).replica);
        assertEquals(1, send(d.sent(new Decision.Lost("reset"))).replica);
        Decision.Send s = send(d.sent(answer(503, "{\"outcomeUnknown\":true}", Map.of())));
        assertEquals(2, s.replica);
        Decision.Action a = d.sent(new Decision.NotSent("refused"));
        while (a instanceof Decision.Send || a instanceof Decision.Sleep) {
            now.addAndGet(TimeUnit.MILLISECONDS.toNanos(200));
            a = a instanceof Decision.Send ? d.sent(new Decision.NotSent("refused")) : d.slept();
        }
        Decision.Failed f = assertInstanceOf(Decision.Failed.class, a);
        assertInstanceOf(PlumException.OutcomeUnknown.class, f.error, "an earlier attempt may have applied it");
    }

    @Test
    void unauthorizedIsFinalAndReadsFailOver() {
        Decision d = new Decision(state(opts()), ApiRequest.get("/v1/kv/app/key/k"));
        Decision.Send s = send(d.start());
        assertNull(s.headers.get("content-type"));
        Decision.Failed f = assertInstanceOf(Decision.Failed.class, d.sent(answer(401, "{\"error\":\"no\"}", Map.of())));
        assertInstanceOf(PlumException.Unauthorized.class, f.error);

        TransportState t = state(opts());
        Decision r = new Decision(t, ApiRequest.get("/v1/kv/app/key/k"));
        send(r.start());
        assertEquals(1, send(r.sent(new Decision.Lost("stalled"))).replica, "a lost read moves on");
        assertInstanceOf(Decision.Done.class, r.sent(answer(200, "{}", Map.of())));
        assertEquals(1, t.last());
        assertEquals(1, send(new Decision(t, ApiRequest.get("/x")).start()).replica, "reads start where the last answered");
    }

    @Test
    void attemptTimeoutIsBoundedByTheDeadline() {
        Decision d = new Decision(state(opts()), put().withDeadline(Duration.ofMillis(100)));
        assertEquals(Duration.ofMillis(100), send(d.start()).timeout);
        now.addAndGet(TimeUnit.MILLISECONDS.toNanos(60));
        assertEquals(Duration.ofMillis(40), send(d.sent(new Decision.NotSent("refused"))).timeout);
    }

    @Test
    void breakerOpensAfterFailuresThenProbesAfterCoolDown() {
        TransportState t = state(opts());
        for (int i = 0; i < 3; i++) {
            Decision d = new Decision(t, put());
            assertEquals(0, send(d.start()).replica);
            d.sent(new Decision.Lost("stalled"));
        }
        assertEquals(List.of(1, 2, 0), new ArrayList<>(t.plan(true)), "open breaker last");
        now.addAndGet(TimeUnit.MILLISECONDS.toNanos(501));
        assertEquals(0, t.plan(true).peekFirst(), "half-open: one probe");
        assertEquals(List.of(1, 2, 0), new ArrayList<>(t.plan(true)), "the others wait another cool-down");
    }

    @Test
    void aRedirectToABadLeaderIsHeldByTheFollower() {
        TransportState t = state(opts());
        for (int i = 0; i < 3; i++) {
            Decision d = new Decision(t, put());
            send(d.start());
            d.sent(new Decision.Lost("stalled"));
        }
        Decision d = new Decision(t, put());
        Decision.Send s = send(d.start());
        assertEquals(1, s.replica);
        Decision.Send again = send(d.sent(answer(307, "{}", leaderIs(0))));
        assertEquals(1, again.replica, "the follower is asked to forward");
        assertNull(again.headers.get("x-plum-redirect"));
    }

    @Test
    void backoffIsCappedFullJitter() {
        Backoff b = new Backoff(Duration.ofMillis(20), Duration.ofSeconds(1));
        assertEquals(TimeUnit.MILLISECONDS.toNanos(20), b.boundNanos(0));
        assertEquals(TimeUnit.MILLISECONDS.toNanos(160), b.boundNanos(3));
        assertEquals(TimeUnit.SECONDS.toNanos(1), b.boundNanos(50));
        Random rng = new Random(1);
        long min = Long.MAX_VALUE;
        long max = 0;
        for (int i = 0; i < 1000; i++) {
            long x = b.delayNanos(4, rng);
            min = Math.min(min, x);
            max = Math.max(max, x);
        }
        assertTrue(min < TimeUnit.MILLISECONDS.toNanos(20) && max > TimeUnit.MILLISECONDS.toNanos(300)
                && max <= b.boundNanos(4));
    }

    @Test
    void configErrors() {
        assertInstanceOf(PlumException.ConfigError.class,
                org.junit.jupiter.api.Assertions.assertThrows(PlumException.class,
                        () -> new TransportState(List.of("r0:1"), opts(), now::get, new Random())));
        Decision d = new Decision(new TransportState(List.of(), opts(), now::get, new Random()), put());
        assertInstanceOf(PlumException.ConfigError.class, assertInstanceOf(Decision.Failed.class, d.start()).error);
        assertFalse(opts().toBuilder().token("s3cr3t").build().toString().contains("s3cr3t"), "the token is never shown");
        assertEquals(List.of("http://a:1", "https://b:2"), PlumClient.parseControllers("a:1, https://b:2/"));
    }

    @Test
    void discoveryNamesTheServiceTheClientServesAndRegistrationItsUpstreams() {
        assertTrue(Discovery.fetchRequest("db", -1, Duration.ZERO, false, "web").path().contains("&clientService=web"));
        assertTrue(Discovery.fetchRequest("db", 3, Duration.ofSeconds(1), false, "web").path().contains("&clientService=web"));
        assertFalse(Discovery.fetchRequest("db", -1, Duration.ZERO, false).path().contains("clientService"));
        var body = Instance.of("i-1", "web", 80).upstreams("db", "cache").body(Duration.ofSeconds(10));
        assertEquals("[\"db\",\"cache\"]", body.get("upstreams").toString());
        assertNull(Instance.of("i-2", "web", 80).body(Duration.ofSeconds(10)).get("upstreams"));
    }
}
