package dev.plum.sdk;

import java.security.SecureRandom;
import java.time.Duration;
import java.util.Deque;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.OptionalLong;

/**
 * The transport's decisions for one call, free of I/O, shared by the blocking and the async
 * driver: which replica next, redirects, failover, backoff with full jitter, the per-replica
 * circuit breaker, the deadline and what a lost write means. It follows the Rust SDK's
 * {@code controllers.rs} (and the Python SDK's {@code _core.decide}) step by step.
 *
 * <p>A state machine: {@link #start()} returns the first {@link Action}; the driver performs it
 * and reports what came of it: {@link #sent(Outcome)} after a {@link Send}, {@link #slept()}
 * after a {@link Sleep}. It ends in {@link Done} or {@link Failed}. Not thread-safe: one driver
 * steps it at a time.
 */
final class Decision {
    static final String REDIRECT = "x-plum-redirect";
    static final String INDEX = "x-plum-index";
    static final String TRACEPARENT = "traceparent";
    static final int MAX_REDIRECTS = 3;
    private static final SecureRandom IDS = new SecureRandom();

    // ---- actions (core → driver) -------------------------------------------------------

    interface Action {
    }

    /** Send one attempt to {@code replica}, bounded as a whole by {@code timeout}. */
    static final class Send implements Action {
        final int replica;
        final String method;
        final String url;
        final Map<String, String> headers;
        final byte[] body;
        final Duration timeout;

        Send(int replica, String method, String url, Map<String, String> headers, byte[] body, Duration timeout) {
            this.replica = replica;
            this.method = method;
            this.url = url;
            this.headers = headers;
            this.body = body;
            this.timeout = timeout;
        }
    }

    static final class Sleep implements Action {
        final long nanos;

        Sleep(long nanos) {
            this.nanos = nanos;
        }
    }

    static final class Done implements Action {
        final Answer answer;

        Done(Answer answer) {
            this.answer = answer;
        }
    }

    static final class Failed implements Action {
        final PlumException error;

        Failed(PlumException error) {
            this.error = error;
        }
    }

    // ---- outcomes (driver → core) ------------------------------------------------------

    interface Outcome {
    }

    static final class Answered implements Outcome {
        final int status;
        final Map<String, String> headers; // lower-case names
        final String text;

        Answered(int status, Map<String, String> headers, String text) {
            this.status = status;
            this.headers = headers;
            this.text = text;
        }
    }

    /** Nothing reached the replica (connect refused or timed out): safe to send elsewhere. */
    static final class NotSent implements Outcome {
        final String error;

        NotSent(String error) {
            this.error = error;
        }
    }

    /** Sent, but no (whole) answer: the outcome is unknown. */
    static final class Lost implements Outcome {
        final String error;

        Lost(String error) {
            this.error = error;
        }
    }

    // ---- state ----------------------------------------------------------------------------

    private final TransportState t;
    private final ApiRequest req;
    private final String traceId = randomHex(16);
    private final long attemptTimeout;
    private long deadline;
    private String lastError = "no attempt made";
    private int redirects;
    private int round;
    private final boolean[] failed;
    private boolean hold;
    private boolean maybeApplied;
    private Deque<Integer> plan;
    private int at = -1;

    Decision(TransportState t, ApiRequest req) {
        this.t = t;
        this.req = req;
        this.failed = new boolean[t.urls.size()];
        this.attemptTimeout = (req.attemptTimeout != null ? req.attemptTimeout : t.options.attemptTimeout()).toNanos();
    }

    static String randomHex(int bytes) {
        byte[] b = new byte[bytes];
        IDS.nextBytes(b);
        StringBuilder sb = new StringBuilder(bytes * 2);
        for (byte x : b) {
            sb.append(Character.forDigit((x >> 4) & 0xf, 16)).append(Character.forDigit(x & 0xf, 16));
        }
        return sb.toString();
    }

    String traceId() {
        return traceId;
    }

    Action start() {
        if (t.urls.isEmpty()) {
            return new Failed(new PlumException.ConfigError("no controller addresses"));
        }
        deadline = t.clock.getAsLong() + (req.deadline != null ? req.deadline : t.options.deadline()).toNanos();
        plan = t.plan(!req.isRead());
        return next();
    }

    Action slept() {
        plan = t.plan(!req.isRead());
        return next();
    }

    private PlumException giveUp(String message) {
        if (maybeApplied) {
            return new PlumException.OutcomeUnknown(message + " (an earlier attempt's outcome is unknown)");
        }
        return new PlumException.Unreachable(message);
    }

    private Action next() {
        if (!plan.isEmpty()) {
            at = plan.pollFirst();
            long now = t.clock.getAsLong();
            if (now - deadline >= 0) {
                return new Failed(giveUp("deadline passed; last: " + lastError));
            }
            long timeout = Math.min(attemptTimeout, deadline - now);
            Map<String, String> headers = new LinkedHashMap<>();
            headers.put(TRACEPARENT, "00-" + traceId + "-" + randomHex(8) + "-01");
            if (t.auth != null) {
                headers.put("authorization", t.auth);
            }
            if (!hold) {
                headers.put(REDIRECT, "1");
            }
            if (req.body != null) {
                headers.put("content-type", "application/json");
            }
            return new Send(at, req.method, t.urls.get(at) + req.path, headers, req.body, Duration.ofNanos(timeout));
        }
        // Every replica failed this round: wait (jittered) before the next.
        long pause = t.options.backoff().delayNanos(round, t.rng);
        round++;
        redirects = 0;
        if ((req.maxRounds > 0 && round >= req.maxRounds) || t.clock.getAsLong() + pause - deadline >= 0) {
            return new Failed(giveUp(lastError));
        }
        return new Sleep(pause);
    }

    Action sent(Outcome outcome) {
        int at = this.at;
        String url = t.urls.get(at);
        BreakerPolicy policy = t.options.breaker();
        if (outcome instanceof NotSent) {
            t.breakers[at].failure(policy, t.clock.getAsLong());
            failed[at] = true;
            lastError = url + ": " + ((NotSent) outcome).error;
            return next();
        }
        if (outcome instanceof Lost) {
            t.breakers[at].failure(policy, t.clock.getAsLong());
            failed[at] = true;
            lastError = url + ": " + ((Lost) outcome).error;
            if (!req.isRead()) {
                if (!req.idempotent) {
                    return new Failed(new PlumException.OutcomeUnknown(lastError));
                }
                maybeApplied = true;
            }
            return next();
        }
        Answered a = (Answered) outcome;
        t.breakers[at].success();
        int named = t.learn(a.headers);
        if (a.status == 307) {
            if (redirects >= MAX_REDIRECTS) {
                // Redirected in circles: leadership is moving. Not applied; the next round (after
                // its pause) starts over.
                lastError = url + ": redirected in circles while leadership moved";
                return next();
            }
            redirects++;
            lastError = url + ": redirected to the leader";
            // A leader that just failed us, whose breaker is open, or that we have no address
            // for: let this replica hold the write and pass it on instead.
            boolean usable = named >= 0 && !failed[named] && !t.breakers[named].isOpen(t.clock.getAsLong());
            if (usable) {
                plan = t.plan(true);
            } else {
                hold = true;
                plan.addFirst(at);
            }
            return next();
        }
        if (a.status == 503 || a.status == 429) {
            // 429: at its limit, did nothing. 503 retryable: certainly not applied.
            if (jsonFlag(a.text, "outcomeUnknown")) {
                if (!req.idempotent) {
                    return new Failed(new PlumException.OutcomeUnknown(url + ": " + PlumException.clip(a.text)));
                }
                maybeApplied = true;
            }
            lastError = url + ": " + PlumException.clip(a.text);
            return next();
        }
        t.answeredBy(at);
        if (a.status < 200 || a.status >= 300) {
            return new Failed(PlumException.statusError(a.status, a.text));
        }
        return new Done(new Answer(a.status, index(a.headers), a.text));
    }

    static OptionalLong index(Map<String, String> headers) {
        String v = headers.get(INDEX);
        if (v == null) {
            return OptionalLong.empty();
        }
        try {
            return OptionalLong.of(Long.parseLong(v.strip()));
        } catch (NumberFormatException e) {
            return OptionalLong.empty();
        }
    }

    private static boolean jsonFlag(String text, String name) {
        com.fasterxml.jackson.databind.JsonNode n = Json.tryParse(text);
        return n != null && n.isObject() && n.path(name).isBoolean() && n.get(name).booleanValue();
    }
}
