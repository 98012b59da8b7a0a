package dev.plum.sdk;

import static org.junit.jupiter.api.Assertions.assertTimeoutPreemptively;
import static org.junit.jupiter.api.Assertions.fail;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.IOException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Set;
import java.util.TreeSet;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.DynamicContainer;
import org.junit.jupiter.api.DynamicNode;
import org.junit.jupiter.api.DynamicTest;
import org.junit.jupiter.api.TestFactory;

/**
 * The Java runner of the shared conformance suite ({@code sdk/conformance/}): every scenario,
 * through the blocking methods and through the {@code CompletableFuture} ones, against the
 * scripted fake controller started as a subprocess (and stopped by its own handle), or, for a
 * scenario with a {@code cluster} object, against a real local cluster started by
 * {@code real_cluster.py} (it finds {@code plum-controller} through {@code PLUM_CONTROLLER_BIN} or
 * {@code $CARGO_TARGET_DIR/debug/}; {@code PLUM_CONFORMANCE_CLUSTER=0} skips those scenarios). The
 * runner contract is {@code sdk/conformance/README.md}. A scenario using an op this runner does
 * not support is reported as skipped (a JUnit assumption), naming the op.
 */
class ConformanceTest {
    static final Path SUITE = Path.of(System.getProperty("plum.conformance.dir",
            Path.of("..", "conformance").toString())).toAbsolutePath().normalize();
    static final Set<String> SUPPORTED = Set.of("kv.put", "kv.get", "kv.cas", "kv.delete", "kv.list", "kv.watch",
            "kv.putMany", "write", "read", "discovery.lookup", "register", "close", "sleep", "control");
    /** Cluster scenarios start real replicas; {@code PLUM_CONFORMANCE_CLUSTER=0} skips them. */
    static final boolean CLUSTER_OFF = "0".equals(System.getenv("PLUM_CONFORMANCE_CLUSTER"));
    static final HttpClient CONTROL = HttpClient.newBuilder().version(HttpClient.Version.HTTP_1_1)
            .proxy(HttpClient.Builder.NO_PROXY).connectTimeout(Duration.ofSeconds(5)).build();

    @TestFactory
    Stream<DynamicNode> scenarios() throws IOException {
        JsonNode suite = Json.parse(Files.readString(SUITE.resolve("scenarios.json")));
        List<DynamicNode> out = new ArrayList<>();
        for (JsonNode s : suite.get("scenarios")) {
            String name = s.get("name").asText();
            boolean cluster = s.has("cluster");
            List<DynamicNode> modes = new ArrayList<>();
            for (String mode : List.of("sync", "async")) {
                modes.add(DynamicTest.dynamicTest(name + "[" + mode + "]", () -> {
                    if (cluster && CLUSTER_OFF) {
                        System.out.println("conformance " + name + "[" + mode + "]: skipped, PLUM_CONFORMANCE_CLUSTER=0");
                    }
                    Assumptions.assumeFalse(cluster && CLUSTER_OFF, "PLUM_CONFORMANCE_CLUSTER=0: no real cluster");
                    Set<String> unsupported = new TreeSet<>();
                    s.get("steps").forEach(st -> {
                        if (!SUPPORTED.contains(st.get("op").asText())) {
                            unsupported.add(st.get("op").asText());
                        }
                    });
                    if (!unsupported.isEmpty()) {
                        System.out.println("conformance " + name + "[" + mode + "]: skipped, unsupported ops " + unsupported);
                    }
                    Assumptions.assumeTrue(unsupported.isEmpty(), "unsupported ops " + unsupported);
                    // a cluster takes up to 90 s to come up, its verdict up to 30 s more
                    assertTimeoutPreemptively(Duration.ofSeconds(cluster ? 300 : 60),
                            () -> run(suite, s, mode.equals("async")));
                }));
            }
            out.add(DynamicContainer.dynamicContainer(name, modes));
        }
        return out.stream();
    }

    // ---- the controllers: the fake, or a real cluster ----------------------------------------

    /**
     * The scenario's controllers: {@code fake_controller.py}, or {@code real_cluster.py} for a
     * {@code cluster} scenario (same command line, ports file and control port).
     */
    static final class Fake implements AutoCloseable {
        final Process proc;
        final Path dir;
        final String launcher;
        final List<String> replicas = new ArrayList<>();
        final String control;
        final String token;

        Fake(JsonNode scenario) throws Exception {
            boolean real = scenario.has("cluster");
            launcher = real ? "real_cluster.py" : "fake_controller.py";
            dir = Files.createTempDirectory("plum-conf-");
            Path ports = dir.resolve("ports.json");
            proc = new ProcessBuilder("python3", SUITE.resolve(launcher).toString(), "--scenario",
                    scenario.get("name").asText(), "--ports-file", ports.toString(),
                    "--scenarios", SUITE.resolve("scenarios.json").toString())
                    .redirectErrorStream(true).redirectOutput(dir.resolve("launcher.log").toFile()).start();
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(real ? 90 : 10);
            while (!Files.exists(ports)) {
                if (!proc.isAlive() || System.nanoTime() > deadline) {
                    close();
                    throw new IllegalStateException(launcher + " did not start (exit "
                            + (proc.isAlive() ? "none" : proc.exitValue()) + "): " + log());
                }
                Thread.sleep(20);
            }
            JsonNode info = Json.parse(Files.readString(ports));
            info.get("replicas").forEach(r -> replicas.add(r.asText()));
            control = info.get("control").asText();
            token = info.hasNonNull("token") ? info.get("token").asText() : null;
        }

        /** A GET on the control port; a cluster's {@code /verdict} may wait ~30 s for its actions. */
        JsonNode get(String path) throws Exception {
            HttpResponse<String> r = CONTROL.send(HttpRequest.newBuilder(URI.create(control + path))
                    .timeout(Duration.ofSeconds(60)).build(), HttpResponse.BodyHandlers.ofString());
            return Json.parse(r.body());
        }

        /**
         * The {@code control} op: the step minus {@code op} and {@code expect} goes to the
         * launcher's {@code /action} as it is; an answer that is not 2xx is a {@code StatusError}.
         */
        Map<String, Object> control(JsonNode step) throws Exception {
            ObjectNode body = ((ObjectNode) step).deepCopy();
            body.remove(List.of("op", "expect"));
            HttpResponse<String> r = CONTROL.send(HttpRequest.newBuilder(URI.create(control + "/action"))
                    .POST(HttpRequest.BodyPublishers.ofByteArray(Json.encode(body)))
                    .header("content-type", "application/json").timeout(Duration.ofSeconds(90)).build(),
                    HttpResponse.BodyHandlers.ofString());
            if (r.statusCode() / 100 != 2) {
                throw new PlumException.StatusError(r.statusCode(), r.body());
            }
            return Map.of();
        }

        String log() {
            try {
                return Files.readString(dir.resolve("launcher.log"));
            } catch (IOException e) {
                return "(no log)";
            }
        }

        @Override
        public void close() throws Exception {
            if (proc.isAlive() && control != null) {
                try {
                    CONTROL.send(HttpRequest.newBuilder(URI.create(control + "/shutdown"))
                            .POST(HttpRequest.BodyPublishers.noBody()).timeout(Duration.ofSeconds(5)).build(),
                            HttpResponse.BodyHandlers.discarding());
                } catch (IOException e) {
                    // it may close the connection as it goes
                }
            }
            if (!proc.waitFor(5, TimeUnit.SECONDS)) {
                proc.destroyForcibly(); // this process only, by its handle
                proc.waitFor(5, TimeUnit.SECONDS);
            }
        }
    }

    // ---- settings, outcomes, checks ---------------------------------------------------------

    static PlumClient client(JsonNode suite, JsonNode scenario, Fake fake) {
        ObjectNode c = ((ObjectNode) suite.get("defaults").get("client")).deepCopy();
        if (scenario.has("client")) {
            c.setAll((ObjectNode) scenario.get("client"));
        }
        Options options = Options.builder()
                .attemptTimeout(ms(c, "attemptTimeoutMs")).deadline(ms(c, "deadlineMs"))
                .connectTimeout(ms(c, "connectTimeoutMs"))
                .backoff(new Backoff(ms(c, "backoffBaseMs"), ms(c, "backoffMaxMs")))
                .breaker(new BreakerPolicy(c.get("breakerFailures").asInt(), ms(c, "breakerCoolDownMs"),
                        Duration.ofSeconds(30)))
                .token(fake.token).build();
        return PlumClient.create(fake.replicas, options,
                new DiscoveryOptions(ms(c, "watchWaitMs"), ms(c, "maxStalenessMs")));
    }

    static Duration ms(JsonNode c, String field) {
        return Duration.ofMillis(c.get(field).asLong());
    }

    static String outcomeOf(Throwable e) {
        if (e == null) {
            return "ok";
        }
        if (e instanceof PlumException.OutcomeUnknown) {
            return "outcome_unknown";
        }
        if (e instanceof PlumException.Unreachable) {
            return "unreachable";
        }
        if (e instanceof PlumException.Unauthorized) {
            return "unauthorized";
        }
        if (e instanceof PlumException.Forbidden) {
            return "forbidden";
        }
        if (e instanceof PlumException.NotFound) {
            return "not_found";
        }
        if (e instanceof PlumException.Conflict) {
            return "conflict";
        }
        if (e instanceof PlumException.StatusError) {
            return "status";
        }
        return "error (" + e + ")";
    }

    static List<String> check(JsonNode step, String outcome, Map<String, Object> result, double elapsedMs,
            Throwable error) {
        JsonNode expect = step.has("expect") ? step.get("expect") : Json.object();
        String where = "step " + step.get("op").asText() + " "
                + Json.asText(step, "key", Json.asText(step, "service", ""));
        List<String> bad = new ArrayList<>();
        if (expect.has("outcome") && !outcome.equals(expect.get("outcome").asText())) {
            bad.add(where + ": outcome " + outcome + ", expected " + expect.get("outcome").asText()
                    + (error == null ? "" : " (" + error + ")"));
        }
        for (String field : List.of("value", "version", "count", "stale", "indices", "values")) {
            if (expect.has(field) && outcome.equals("ok")) {
                JsonNode want = expect.get(field);
                JsonNode got = result.containsKey(field) ? Json.MAPPER.valueToTree(result.get(field)) : null;
                if (got == null || !got.toString().equals(want.toString())) { // 1L and 1 alike
                    bad.add(where + ": " + field + " " + (got == null ? "<missing>" : got) + ", expected " + want);
                }
            }
        }
        if (expect.has("maxCallMs") && result.containsKey("maxCallMs")
                && (double) result.get("maxCallMs") > expect.get("maxCallMs").asDouble()) {
            bad.add(String.format("%s: longest call %.0f ms, at most %s expected", where, (double) result.get("maxCallMs"),
                    expect.get("maxCallMs")));
        }
        if (expect.has("maxElapsedMs") && elapsedMs > expect.get("maxElapsedMs").asDouble()) {
            bad.add(String.format("%s: took %.0f ms, at most %s expected", where, elapsedMs, expect.get("maxElapsedMs")));
        }
        if (expect.has("minElapsedMs") && elapsedMs < expect.get("minElapsedMs").asDouble()) {
            bad.add(String.format("%s: took %.0f ms, at least %s expected", where, elapsedMs, expect.get("minElapsedMs")));
        }
        return bad;
    }

    // ---- running the steps --------------------------------------------------------------------

    static <T> T await(CompletableFuture<T> f) throws Throwable {
        try {
            return f.get(30, TimeUnit.SECONDS);
        } catch (ExecutionException e) {
            throw Transport.unwrap(e);
        }
    }

    /** {@code kv.putMany}: keys {@code prefix0..} one after another; the first error ends it (thrown). */
    static Map<String, Object> putMany(PlumClient client, JsonNode step, boolean async) throws Throwable {
        String ns = step.get("ns").asText();
        String prefix = step.get("prefix").asText();
        long interval = step.has("intervalMs") ? step.get("intervalMs").asLong() : 0;
        Map<String, Object> out = new LinkedHashMap<>(Map.of("count", 0, "version", 0L, "maxCallMs", 0.0));
        for (int n = 0; n < step.get("count").asInt(); n++) {
            long started = System.nanoTime();
            String key = prefix + n;
            String value = "v" + n;
            long version = (async ? await(client.kv().putAsync(ns, key, value)) : client.kv().put(ns, key, value)).version();
            tally(out, version, started);
            Thread.sleep(interval);
        }
        return out;
    }

    /**
     * One acknowledged put of {@code kv.putMany}: counted, its version (the highest seen is
     * reported: above 1 means a write was applied twice) and its wall time.
     */
    static void tally(Map<String, Object> out, long version, long startedNanos) {
        out.put("count", (int) out.get("count") + 1);
        out.put("version", Math.max((long) out.get("version"), version));
        out.put("maxCallMs", Math.max((double) out.get("maxCallMs"), (System.nanoTime() - startedNanos) / 1e6));
    }

    /** {@code kv.watch}: each change's index, and with {@code key} the key's value in each change. */
    static Map<String, Object> watched(JsonNode step, List<KvChange> changes) {
        Map<String, Object> out = new LinkedHashMap<>();
        List<Long> indices = new ArrayList<>();
        changes.forEach(c -> indices.add(c.index()));
        out.put("indices", indices);
        if (step.has("key")) {
            String key = step.get("key").asText();
            List<String> values = new ArrayList<>();
            for (KvChange c : changes) {
                values.add(c.items().stream().filter(i -> i.key().equals(key)).map(KvItem::value).findFirst()
                        .orElse(null));
            }
            out.put("values", values);
        }
        return out;
    }

    static Map<String, Object> runStep(PlumClient client, Fake fake, JsonNode step, boolean async) throws Throwable {
        String op = step.get("op").asText();
        Map<String, Object> r = new LinkedHashMap<>();
        String ns = Json.asText(step, "ns", "");
        String key = Json.asText(step, "key", "");
        switch (op) {
            case "kv.put": {
                String v = step.get("value").asText();
                r.put("version", (async ? await(client.kv().putAsync(ns, key, v)) : client.kv().put(ns, key, v)).version());
                return r;
            }
            case "kv.cas": {
                String v = step.get("value").asText();
                long ev = step.get("expectVersion").asLong();
                r.put("version", (async ? await(client.kv().compareAndSetAsync(ns, key, v, ev))
                        : client.kv().compareAndSet(ns, key, v, ev)).version());
                return r;
            }
            case "kv.get": {
                Optional<KvItem> item = async ? await(client.kv().getAsync(ns, key)) : client.kv().get(ns, key);
                r.put("value", item.map(KvItem::value).orElse(null));
                return r;
            }
            case "kv.delete":
                if (async) {
                    await(client.kv().deleteAsync(ns, key));
                } else {
                    client.kv().delete(ns, key);
                }
                return r;
            case "kv.list": {
                String prefix = Json.asText(step, "prefix", "");
                r.put("count", (async ? await(client.kv().listAsync(ns, prefix)) : client.kv().list(ns, prefix)).size());
                return r;
            }
            case "kv.putMany":
                return putMany(client, step, async);
            case "kv.watch": {
                KvWatch w = client.kv().watch(ns, Json.asText(step, "prefix", ""), step.get("fromIndex").asLong(),
                        Duration.ofSeconds(1));
                List<KvChange> changes = new ArrayList<>();
                for (int i = 0; i < step.get("changes").asInt(); i++) {
                    changes.add(async ? await(w.nextAsync()) : w.next());
                }
                return watched(step, changes);
            }
            case "control":
                // not SDK behaviour: blocking in both modes (an action may take up to 90 s)
                return fake.control(step);
            case "write":
            case "read": {
                String method = Json.asText(step, "method", op.equals("read") ? "GET" : "POST");
                boolean idempotent = step.has("idempotent") ? step.get("idempotent").asBoolean() : op.equals("read");
                JsonNode body = step.get("body");
                if (async) {
                    await(client.requestAsync(method, step.get("path").asText(), body, idempotent));
                } else {
                    client.request(method, step.get("path").asText(), body, idempotent);
                }
                return r;
            }
            case "discovery.lookup": {
                String service = step.get("service").asText();
                Discovered d = async ? await(client.discoverAsync(service, null)) : client.discover(service);
                r.put("count", d.endpoints().size());
                r.put("stale", d.stale());
                return r;
            }
            case "register": {
                Registrar reg = client.registrar(Duration.ofMillis(step.has("ttlMs") ? step.get("ttlMs").asLong() : 10000));
                Instance inst = Instance.of(step.get("instanceId").asText(), step.get("service").asText(),
                        step.get("port").asInt());
                if (async) {
                    await(reg.registerAsync(inst));
                } else {
                    reg.register(inst);
                }
                return r;
            }
            case "close":
                client.close();
                return r;
            default:
                throw new AssertionError("unsupported op " + op);
        }
    }

    static void run(JsonNode suite, JsonNode scenario, boolean async) throws Exception {
        List<String> failures = new ArrayList<>();
        try (Fake fake = new Fake(scenario)) {
            PlumClient client = client(suite, scenario, fake);
            try {
                for (JsonNode step : scenario.get("steps")) {
                    if (step.get("op").asText().equals("sleep")) {
                        Thread.sleep(step.get("ms").asLong());
                        continue;
                    }
                    long started = System.nanoTime();
                    Throwable error = null;
                    Map<String, Object> result = Map.of();
                    try {
                        result = runStep(client, fake, step, async);
                    } catch (Throwable e) {
                        error = e;
                    }
                    failures.addAll(check(step, outcomeOf(error), result, (System.nanoTime() - started) / 1e6, error));
                }
            } finally {
                client.close();
            }
            try {
                JsonNode verdict = fake.get("/verdict");
                verdict.get("failures").forEach(f -> failures.add("server: " + f.asText()));
            } catch (Exception e) {
                failures.add("no verdict from " + fake.launcher + ": " + e);
            }
            if (!failures.isEmpty()) {
                JsonNode report = fake.get("/report");
                if (report.has("received")) {
                    List<String> summary = new ArrayList<>();
                    for (Iterator<JsonNode> it = report.get("received").elements(); it.hasNext(); ) {
                        JsonNode x = it.next();
                        summary.add("(" + x.get("replica") + " " + x.get("method").asText() + " "
                                + x.get("target").asText() + " redirect=" + x.get("redirect") + ")");
                    }
                    failures.add("received: " + summary);
                } else {
                    failures.add("cluster: " + report.toPrettyString());
                }
            }
        }
        String label = "conformance " + scenario.get("name").asText() + "[" + (async ? "async" : "sync") + "]";
        if (!failures.isEmpty()) {
            System.out.println(label + ": FAILED");
            fail(String.join("\n", failures));
        }
        System.out.println(label + ": passed");
    }
}
