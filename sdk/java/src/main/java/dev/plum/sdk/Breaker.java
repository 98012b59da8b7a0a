package dev.plum.sdk;

/**
 * A circuit breaker per replica: after a run of failures the replica is skipped for a cool-down
 * (doubling while it keeps failing), then one request probes it. Times are {@code System.nanoTime()}
 * values (or the test clock's). Thread-safe.
 */
final class Breaker {
    private int consecutive;
    private boolean open;
    private long openUntil;
    private int trips;

    synchronized boolean allows(BreakerPolicy policy, long now) {
        if (!open) {
            return true;
        }
        if (now - openUntil >= 0) {
            // Half-open: this caller probes; the others wait another cool-down.
            openUntil = now + policy.coolDown().toNanos();
            return true;
        }
        return false;
    }

    synchronized boolean isOpen(long now) {
        return open && now - openUntil < 0;
    }

    synchronized void success() {
        consecutive = 0;
        open = false;
        trips = 0;
    }

    synchronized void failure(BreakerPolicy policy, long now) {
        consecutive++;
        if (consecutive >= policy.failures()) {
            double cool = policy.coolDown().toNanos() * Math.pow(2, Math.min(trips, 16));
            open = true;
            openUntil = now + (long) Math.min(cool, (double) policy.maxCoolDown().toNanos());
            trips++;
            consecutive = 0;
        }
    }
}
