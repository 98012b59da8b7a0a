import com.fasterxml.jackson.databind.JsonNode;
import dev.plum.sdk.KvWritten;
import dev.plum.sdk.Options;
import dev.plum.sdk.PlumClient;
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.io.PrintStream;
import java.net.URLEncoder;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.time.Instant;
import java.util.concurrent.atomic.AtomicBoolean;

/**
 * The Java SDK under {@code plum-bench}'s measures (chaos/src/sdk_bench.rs), driven by it; the
 * same line protocol as sdk/python/bench/sdk_bench.py.
 *
 * <p>{@code discovery}: with the bench service registered by plum-bench ({@code
 * PLUM_BENCH_SERVICE}, {@code PLUM_BENCH_INSTANCES}, {@code PLUM_BENCH_SECONDS}), cached lookups on
 * this thread, then uncached lookups one at a time: {@code cached <calls> <elapsed_ns>}, {@code
 * uncached <ns>} a call.
 *
 * <p>{@code writer}: {@code write <ns> <key>} / {@code stop} on stdin; the counter key written one
 * write at a time between them, {@code call <start_unix_ns> <took_ns> <version>} per write, {@code
 * stopped} after {@code stop}. Exits at the end of stdin. Failures print {@code error <message>}.
 */
public final class SdkBench {
    private static final PrintStream OUT = new PrintStream(System.out, false, StandardCharsets.UTF_8);

    private static synchronized void out(String line) {
        OUT.print(line + "\n");
        OUT.flush();
    }

    public static void main(String[] args) {
        try {
            if (args.length == 1 && args[0].equals("discovery")) {
                discovery();
            } else if (args.length == 1 && args[0].equals("writer")) {
                writer();
            } else {
                throw new IllegalArgumentException("usage: SdkBench discovery|writer");
            }
        } catch (Exception e) {
            out("error " + e);
            System.exit(1);
        }
    }

    static void discovery() throws Exception {
        String service = System.getenv("PLUM_BENCH_SERVICE");
        int instances = Integer.parseInt(System.getenv("PLUM_BENCH_INSTANCES"));
        long limit = Long.parseLong(System.getenv("PLUM_BENCH_SECONDS")) * 1_000_000_000L;
        try (PlumClient plum = PlumClient.fromEnv(Options.defaults())) {
            // The replica asked may not have applied the registrations yet: wait for the watch.
            long ready = System.nanoTime();
            while (plum.discover(service).endpoints().size() != instances) {
                if (System.nanoTime() - ready > 10_000_000_000L) {
                    throw new IllegalStateException("the cache never held the " + instances + " registered endpoints");
                }
                Thread.sleep(10);
            }
            long calls = 0;
            long started = System.nanoTime();
            while (System.nanoTime() - started < limit) {
                // Batches of lookups between clock reads; each is a full SDK call.
                for (int i = 0; i < 1000; i++) {
                    calls += plum.discover(service).endpoints().isEmpty() ? 0 : 1;
                }
            }
            out("cached " + calls + " " + (System.nanoTime() - started));
            String path = "/v1/discovery?service=" + URLEncoder.encode(service, StandardCharsets.UTF_8);
            StringBuilder lines = new StringBuilder();
            long began = System.nanoTime();
            while (System.nanoTime() - began < limit) {
                long t = System.nanoTime();
                JsonNode endpoints = plum.request("GET", path, null, true).json();
                lines.append("uncached ").append(System.nanoTime() - t).append('\n');
                if (endpoints.size() != instances) {
                    throw new IllegalStateException("uncached lookup returned " + endpoints.size() + " endpoints");
                }
            }
            OUT.print(lines);
            OUT.flush();
        }
    }

    static long unixNanos() {
        Instant now = Instant.now();
        return now.getEpochSecond() * 1_000_000_000L + now.getNano();
    }

    static void writeCounter(PlumClient plum, String ns, String key, AtomicBoolean stop, AtomicBoolean failed) {
        long expected = 1;
        try {
            while (!stop.get()) {
                long startUnixNs = unixNanos();
                long t = System.nanoTime();
                KvWritten written = plum.kv().put(ns, key, Long.toString(expected));
                out("call " + startUnixNs + " " + (System.nanoTime() - t) + " " + written.version());
                expected = written.version() + 1;
            }
        } catch (RuntimeException e) {
            failed.set(true);
            out("error a write failed outright: " + e);
        }
    }

    static void writer() throws Exception {
        // The Rust bench's transport settings for this measure: 1 s per attempt, 20 s per call.
        Options options = Options.builder().attemptTimeout(Duration.ofSeconds(1)).deadline(Duration.ofSeconds(20)).build();
        try (PlumClient plum = PlumClient.fromEnv(options)) {
            BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
            AtomicBoolean failed = new AtomicBoolean();
            AtomicBoolean stop = null;
            Thread running = null;
            for (String line; (line = in.readLine()) != null; ) {
                String[] words = line.trim().split("\\s+");
                if (words.length == 3 && words[0].equals("write") && running == null) {
                    AtomicBoolean s = new AtomicBoolean();
                    running = new Thread(() -> writeCounter(plum, words[1], words[2], s, failed), "bench-writer");
                    running.start();
                    stop = s;
                } else if (words.length == 1 && words[0].equals("stop") && running != null) {
                    stop.set(true);
                    running.join();
                    running = null;
                    if (!failed.get()) {
                        out("stopped");
                    }
                } else {
                    out("error unexpected command '" + line.trim() + "'");
                }
            }
        }
    }
}
