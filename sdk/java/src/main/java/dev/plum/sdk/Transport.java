package dev.plum.sdk;

import java.net.ConnectException;
import java.net.NoRouteToHostException;
import java.net.URI;
import java.net.UnknownHostException;
import java.net.http.HttpClient;
import java.net.http.HttpConnectTimeoutException;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.channels.UnresolvedAddressException;
import java.nio.charset.StandardCharsets;
import java.util.HashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Random;
import java.util.concurrent.CancellationException;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionException;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.ThreadFactory;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * The I/O of the transport: performs the attempts and pauses a {@link Decision} asks for, over
 * {@link HttpClient} (HTTP/1.1, redirects never followed by the client itself: a 307 to the
 * leader is the core's to follow). Decides nothing. Thread-safe; one per client.
 */
public final class Transport implements AutoCloseable {
    final TransportState state;
    private final HttpClient http;
    private final ExecutorService executor;
    private volatile boolean closed;

    public Transport(List<String> urls, Options options) {
        this.state = new TransportState(urls, options, System::nanoTime, new Random());
        this.executor = Executors.newCachedThreadPool(daemon("plum-http"));
        this.http = HttpClient.newBuilder()
                .version(HttpClient.Version.HTTP_1_1)
                .followRedirects(HttpClient.Redirect.NEVER)
                .proxy(HttpClient.Builder.NO_PROXY)
                .connectTimeout(options.connectTimeout())
                .executor(executor)
                .build();
    }

    static ThreadFactory daemon(String name) {
        AtomicInteger n = new AtomicInteger();
        return r -> {
            Thread th = new Thread(r, name + "-" + n.incrementAndGet());
            th.setDaemon(true);
            return th;
        };
    }

    /** One call, blocking: the answer, or a {@link PlumException}. */
    public Answer send(ApiRequest req) {
        ensureOpen();
        Decision d = new Decision(state, req);
        Decision.Action a = d.start();
        while (true) {
            if (a instanceof Decision.Done) {
                return ((Decision.Done) a).answer;
            }
            if (a instanceof Decision.Failed) {
                throw ((Decision.Failed) a).error;
            }
            if (a instanceof Decision.Sleep) {
                try {
                    TimeUnit.NANOSECONDS.sleep(((Decision.Sleep) a).nanos);
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                    throw new PlumException("interrupted", e);
                }
                a = d.slept();
            } else {
                CompletableFuture<Decision.Outcome> f = attempt((Decision.Send) a);
                Decision.Outcome o;
                try {
                    o = f.get();
                } catch (InterruptedException e) {
                    f.cancel(true);
                    Thread.currentThread().interrupt();
                    throw new PlumException("interrupted", e);
                } catch (ExecutionException e) {
                    throw new PlumException("transport failure", e.getCause());
                }
                a = d.sent(o);
            }
        }
    }

    /** One call, asynchronously: completes with the answer, or exceptionally with a {@link PlumException}. */
    public CompletableFuture<Answer> sendAsync(ApiRequest req) {
        CompletableFuture<Answer> result = new CompletableFuture<>();
        try {
            ensureOpen();
            Decision d = new Decision(state, req);
            step(d, d.start(), result);
        } catch (RuntimeException e) {
            result.completeExceptionally(e);
        }
        return result;
    }

    private void step(Decision d, Decision.Action a, CompletableFuture<Answer> result) {
        if (result.isDone()) {
            return; // cancelled by the caller
        }
        try {
            if (a instanceof Decision.Done) {
                result.complete(((Decision.Done) a).answer);
            } else if (a instanceof Decision.Failed) {
                result.completeExceptionally(((Decision.Failed) a).error);
            } else if (a instanceof Decision.Sleep) {
                CompletableFuture.runAsync(() -> step(d, d.slept(), result),
                        CompletableFuture.delayedExecutor(((Decision.Sleep) a).nanos, TimeUnit.NANOSECONDS, executor));
            } else {
                CompletableFuture<Decision.Outcome> f = attempt((Decision.Send) a);
                result.whenComplete((x, e) -> f.cancel(true)); // a cancelled call ends its attempt
                f.whenComplete((o, e) -> {
                    if (e != null) {
                        result.completeExceptionally(new PlumException("transport failure", unwrap(e)));
                    } else {
                        step(d, d.sent(o), result);
                    }
                });
            }
        } catch (RuntimeException e) {
            result.completeExceptionally(e);
        }
    }

    /** One attempt, bounded as a whole (headers and body) by its timeout; never completes exceptionally. */
    CompletableFuture<Decision.Outcome> attempt(Decision.Send s) {
        HttpRequest.Builder b = HttpRequest.newBuilder(URI.create(s.url)).timeout(s.timeout);
        s.headers.forEach(b::header);
        b.method(s.method, s.body == null ? HttpRequest.BodyPublishers.noBody()
                : HttpRequest.BodyPublishers.ofByteArray(s.body));
        AtomicInteger status = new AtomicInteger(-1);
        HttpResponse.BodyHandler<byte[]> handler = info -> {
            status.set(info.statusCode());
            return HttpResponse.BodySubscribers.ofByteArray();
        };
        CompletableFuture<HttpResponse<byte[]>> exchange;
        try {
            exchange = http.sendAsync(b.build(), handler);
        } catch (RuntimeException e) { // e.g. a closed executor
            return CompletableFuture.completedFuture(new Decision.NotSent(describe(e)));
        }
        CompletableFuture<Decision.Outcome> out = exchange.handle((resp, err) -> outcome(resp, err, status.get()));
        return out.completeOnTimeout(null, s.timeout.toNanos(), TimeUnit.NANOSECONDS).thenApply(o -> {
            if (o != null) {
                return o;
            }
            exchange.cancel(true);
            int st = status.get();
            if (st < 0) {
                return new Decision.Lost("no answer within the attempt timeout");
            }
            if (st >= 200 && st < 300) {
                return new Decision.Lost("the answer was cut off by the attempt timeout");
            }
            return new Decision.Answered(st, Map.of(), "the answer was cut off by the attempt timeout");
        });
    }

    private static Decision.Outcome outcome(HttpResponse<byte[]> resp, Throwable err, int status) {
        if (err == null) {
            Map<String, String> headers = new HashMap<>();
            resp.headers().map().forEach((k, v) -> {
                if (!v.isEmpty()) {
                    headers.put(k.toLowerCase(Locale.ROOT), v.get(0));
                }
            });
            return new Decision.Answered(resp.statusCode(), headers, new String(resp.body(), StandardCharsets.UTF_8));
        }
        Throwable e = unwrap(err);
        if (notSent(e)) {
            return new Decision.NotSent(describe(e));
        }
        if (status >= 0 && !(status >= 200 && status < 300)) {
            // The status line arrived (the request was received); the body was cut off.
            return new Decision.Answered(status, Map.of(), describe(e));
        }
        return new Decision.Lost(describe(e));
    }

    /** Whether the request certainly never reached the replica. */
    static boolean notSent(Throwable e) {
        for (Throwable c = e; c != null; c = c.getCause()) {
            if (c instanceof ConnectException || c instanceof HttpConnectTimeoutException
                    || c instanceof UnresolvedAddressException || c instanceof UnknownHostException
                    || c instanceof NoRouteToHostException) {
                return true;
            }
            if (c.getCause() == c) {
                break;
            }
        }
        return false;
    }

    static Throwable unwrap(Throwable e) {
        while ((e instanceof CompletionException || e instanceof ExecutionException) && e.getCause() != null) {
            e = e.getCause();
        }
        return e;
    }

    private static String describe(Throwable e) {
        String m = e.getMessage();
        String text = e.getClass().getSimpleName() + (m == null || m.isBlank() ? "" : ": " + m);
        return PlumException.clip(text);
    }


    private void ensureOpen() {
        if (closed) {
            throw new PlumException("the client is closed");
        }
    }

    ExecutorService executor() {
        return executor;
    }

    boolean isClosed() {
        return closed;
    }

    /** The leader's URL as last learnt, or {@code null}. */
    public String leader() {
        return state.leaderUrl();
    }

    /** Ends the transport's threads; calls in flight fail. Closing twice does nothing. */
    @Override
    public void close() {
        if (closed) {
            return;
        }
        closed = true;
        executor.shutdownNow();
    }

    static boolean isCancellation(Throwable e) {
        return unwrap(e) instanceof CancellationException;
    }


}
