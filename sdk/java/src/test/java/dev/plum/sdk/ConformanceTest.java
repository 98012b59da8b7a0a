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
 * scripted fake controller started as a subprocess (and stopped by its own handle). The runner
 * contract is {@code sdk/conformance/README.md}. A scenario using an op this runner does not
 * support is reported as skipped (a JUnit assumption), naming the op.
 */
class ConformanceTest {
    static final Path SUITE = Path.of(System.getProperty("plum.conformance.dir",
            Path.of("..", "conformance").toString())).toAbsolutePath().normalize();
    static final Set<String> SUPPORTED = Set.of("kv.put", "kv.get", "kv.cas", "kv.delete", "kv.list", "kv.watch",
            "write", "read", "discovery.lookup", "register", "close", "sleep");
    static final HttpClient CONTROL = HttpClient.newBuilder().version(HttpClient.Version.HTTP_1_1)
            .proxy(HttpClient.Builder.NO_PROXY).connectTimeout(Duration.ofSeconds(5)).build();

    @TestFactory
    Stream<DynamicNode> scenarios() throws IOException {
        JsonNode suite = Json.parse(Files.readString(SUITE.resolve("scenarios.json")));
        List<DynamicNode> out = new ArrayList<>();
        for (JsonNode s : suite.get("scenarios")) {
            String name = s.get("name").asText();
            List<DynamicNode> modes = new ArrayList<>();
            for (String mode : List.of("sync", "async")) {
                modes.add(DynamicTest.dynamicTest(name + "[" + mode + "]", () -> {
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
                    assertTimeoutPreemptively(Duration.ofSeconds(60), () -> run(suite, s, mode.equals("async")));
                }));
            }
            out.add(DynamicContainer.dynamicContainer(name, modes));
        }
        return out.stream();
    }

    // ---- the fake controller ----------------------------------------------------------------

    static final class Fake implements AutoCloseable {
        final Process proc;
        final Path dir;
        final List<String> replicas = new ArrayList<>();
        final String control;
        final String token;

        Fake(String scenario) throws Exception {
            dir = Files.createTempDirectory("plum-conf-");
            Path ports = dir.resolve("ports.json");
            proc = new ProcessBuilder("python3", SUITE.resolve("fake_controller.py").toString(), "--scenario", scenario,
                    "--ports-file", ports.toString(), "--scenarios", SUITE.resolve("scenarios.json").toString())
                    .redirectErrorStream(true).redirectOutput(dir.resolve("fake.log").toFile()).start();
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
            while (!Files.exists(ports)) {
                if (!proc.isAlive() || System.nanoTime() > deadline) {
                    close();
                    throw new IllegalStateException("the fake controller did not start (exit "
                            + (proc.isAlive() ? "none" : proc.exitValue()) + "): " + log());
                }
                Thread.sleep(20);
            }
            JsonNode info = Json.parse(Files.readString(ports));
            info.get("replicas").forEach(r -> replicas.add(r.asText()));
            control = info.get("control").asText();
            token = info.hasNonNull("token") ? info.get("token").asText() : null;
        }

        JsonNode get(String path) throws Exception {
            HttpResponse<String> r = CONTROL.send(HttpRequest.newBuilder(URI.create(control + path))
                    .timeout(Duration.ofSeconds(5)).build(), HttpResponse.BodyHandlers.ofString());
            return Json.parse(r.body());
        }

        String log() {
            try {
                return Files.readString(dir.resolve("fake.log"));
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

    static List<String> check(JsonNode step, String outcome, Map<String, Object> result, double elapsedMs) {
        JsonNode expect = step.has("expect") ? step.get("expect") : Json.object();
        String where = "step " + step.get("op").asText() + " "
                + Json.asText(step, "key", Json.asText(step, "service", ""));
        List<String> bad = new ArrayList<>();
        if (expect.has("outcome") && !outcome.equals(expect.get("outcome").asText())) {
            bad.add(where + ": outcome " + outcome + ", expected " + expect.get("outcome").asText());
        }
        for (String field : List.of("value", "version", "count", "stale", "indices")) {
            if (expect.has(field) && outcome.equals("ok")) {
                JsonNode want = expect.get(field);
                JsonNode got = result.containsKey(field) ? Json.MAPPER.valueToTree(result.get(field)) : null;
                if (got == null || !got.toString().equals(want.toString())) { // 1L and 1 alike
                    bad.add(where + ": " + field + " " + (got == null ? "<missing>" : got) + ", expected " + want);
                }
            }
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

    static Map<String, Object> runStep(PlumClient client, JsonNode step, boolean async) throws Throwable {
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
            case "kv.watch": {
                KvWatch w = client.kv().watch(ns, Json.asText(step, "prefix", ""), step.get("fromIndex").asLong(),
                        Duration.ofSeconds(1));
                List<Long> indices = new ArrayList<>();
                for (int i = 0; i < step.get("changes").asInt(); i++) {
                    indices.add((async ? await(w.nextAsync()) : w.next()).index());
                }
                r.put("indices", indices);
                return r;
            }
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
        try (Fake fake = new Fake(scenario.get("name").asText())) {
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
                        result = runStep(client, step, async);
                    } catch (Throwable e) {
                        error = e;
                    }
                    failures.addAll(check(step, outcomeOf(error), result, (System.nanoTime() - started) / 1e6));
                }
            } finally {
                client.close();
            }
            JsonNode verdict = fake.get("/verdict");
            verdict.get("failures").forEach(f -> failures.add("server: " + f.asText()));
            if (!failures.isEmpty()) {
                List<String> summary = new ArrayList<>();
                for (Iterator<JsonNode> it = fake.get("/report").get("received").elements(); it.hasNext(); ) {
                    JsonNode x = it.next();
                    summary.add("(" + x.get("replica") + " " + x.get("method").asText() + " " + x.get("target").asText()
                            + " redirect=" + x.get("redirect") + ")");
                }
                failures.add("received: " + summary);
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
