package dev.plum.sdk;

import java.util.ArrayList;
import java.util.List;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * {@code version=} of discovery: an exact match unless it starts with a comparison operator or
 * holds several comparators ({@code ^1.2}, {@code ~1.4.0}, {@code >=1.0, <2.0}, {@code *}): then
 * a semver range with Cargo's rules, as the controller and the Rust SDK apply it. A version that
 * is not semver only ever matches exactly; a malformed range is an {@link IllegalArgumentException}.
 */
public final class VersionFilter {
    private static final Pattern SEMVER =
            Pattern.compile("^v?(\\d+)\\.(\\d+)\\.(\\d+)(?:-([0-9A-Za-z.-]+))?(?:\\+[0-9A-Za-z.-]+)?$");
    private static final Pattern COMPARATOR = Pattern.compile(
            "^(\\^|~|>=|<=|>|<|=)?\\s*v?(\\*|\\d+)(?:\\.(\\*|x|\\d+))?(?:\\.(\\*|x|\\d+))?(?:-([0-9A-Za-z.-]+))?$");

    private final String text;
    private final boolean exact;
    private final List<Bound> bounds = new ArrayList<>();

    public VersionFilter(String text) {
        this.text = text;
        String t = text.strip();
        this.exact = !(t.startsWith("^") || t.startsWith("~") || t.startsWith(">") || t.startsWith("<")
                || t.startsWith("=") || t.startsWith("*") || t.contains(","));
        if (!exact) {
            for (String part : t.split(",", -1)) {
                comparator(part.strip());
            }
        }
    }

    /** A semver version: major.minor.patch and its pre-release identifiers. */
    static final class V implements Comparable<V> {
        final long major;
        final long minor;
        final long patch;
        final List<Object> pre; // Long or String identifiers

        V(long major, long minor, long patch, List<Object> pre) {
            this.major = major;
            this.minor = minor;
            this.patch = patch;
            this.pre = pre;
        }

        boolean sameRelease(V o) {
            return major == o.major && minor == o.minor && patch == o.patch;
        }

        @Override
        public int compareTo(V o) {
            int c = Long.compare(major, o.major);
            if (c == 0) {
                c = Long.compare(minor, o.minor);
            }
            if (c == 0) {
                c = Long.compare(patch, o.patch);
            }
            if (c != 0) {
                return c;
            }
            // A pre-release sorts before its release.
            if (pre.isEmpty() || o.pre.isEmpty()) {
                return Boolean.compare(pre.isEmpty(), o.pre.isEmpty());
            }
            for (int i = 0; i < Math.min(pre.size(), o.pre.size()); i++) {
                Object a = pre.get(i);
                Object b = o.pre.get(i);
                int d;
                if (a instanceof Long && b instanceof Long) {
                    d = Long.compare((Long) a, (Long) b);
                } else if (a instanceof Long) {
                    d = -1; // numeric identifiers sort before alphanumeric ones
                } else if (b instanceof Long) {
                    d = 1;
                } else {
                    d = ((String) a).compareTo((String) b);
                }
                if (d != 0) {
                    return d;
                }
            }
            return Integer.compare(pre.size(), o.pre.size());
        }
    }

    private static final class Bound {
        final String op;
        final V v;

        Bound(String op, V v) {
            this.op = op;
            this.v = v;
        }
    }

    private static List<Object> pre(String s) {
        List<Object> out = new ArrayList<>();
        if (s == null) {
            return out;
        }
        for (String p : s.split("\\.")) {
            out.add(p.chars().allMatch(Character::isDigit) && !p.isEmpty() ? (Object) Long.parseLong(p) : p);
        }
        return out;
    }

    static V parse(String text) {
        Matcher m = SEMVER.matcher(text.strip());
        if (!m.matches()) {
            return null;
        }
        return new V(Long.parseLong(m.group(1)), Long.parseLong(m.group(2)), Long.parseLong(m.group(3)), pre(m.group(4)));
    }

    private static boolean wild(String x) {
        return x == null || x.equals("*") || x.equals("x");
    }

    private static V v(long a, long b, long c) {
        return new V(a, b, c, List.of());
    }

    private void comparator(String part) {
        Matcher m = COMPARATOR.matcher(part);
        if (part.isEmpty() || !m.matches()) {
            throw new IllegalArgumentException("`" + text + "` is not a semver range");
        }
        String op = m.group(1) == null ? "^" : m.group(1);
        if (m.group(2).equals("*")) {
            return;
        }
        long ma = Long.parseLong(m.group(2));
        Long mi = wild(m.group(3)) ? null : Long.parseLong(m.group(3));
        Long pa = wild(m.group(4)) ? null : Long.parseLong(m.group(4));
        V lo = new V(ma, mi == null ? 0 : mi, pa == null ? 0 : pa, pre(m.group(5)));
        switch (op) {
            case "=":
                if (mi == null) {
                    add(">=", lo, "<", v(ma + 1, 0, 0));
                } else if (pa == null) {
                    add(">=", lo, "<", v(ma, mi + 1, 0));
                } else {
                    bounds.add(new Bound("=", lo));
                }
                return;
            case ">":
            case ">=":
            case "<":
            case "<=":
                if (op.equals(">") && (mi == null || pa == null)) {
                    bounds.add(new Bound(">=", mi == null ? v(ma + 1, 0, 0) : v(ma, mi + 1, 0)));
                } else if (op.equals("<=") && (mi == null || pa == null)) {
                    bounds.add(new Bound("<", mi == null ? v(ma + 1, 0, 0) : v(ma, mi + 1, 0)));
                } else {
                    bounds.add(new Bound(op, lo));
                }
                return;
            case "~":
                add(">=", lo, "<", mi == null ? v(ma + 1, 0, 0) : v(ma, mi + 1, 0));
                return;
            default: // caret
                V hi;
                if (ma > 0 || mi == null) {
                    hi = v(ma + 1, 0, 0);
                } else if (mi > 0 || pa == null) {
                    hi = v(0, mi + 1, 0);
                } else {
                    hi = v(0, 0, pa + 1);
                }
                add(">=", lo, "<", hi);
        }
    }

    private void add(String op1, V a, String op2, V b) {
        bounds.add(new Bound(op1, a));
        bounds.add(new Bound(op2, b));
    }

    public boolean matches(String version) {
        if (exact) {
            return version.equals(text);
        }
        V v = parse(version);
        if (v == null) {
            return false;
        }
        if (!v.pre.isEmpty() && bounds.stream().noneMatch(b -> !b.v.pre.isEmpty() && b.v.sameRelease(v))) {
            return false; // pre-releases match only a comparator naming that same version
        }
        for (Bound b : bounds) {
            int c = v.compareTo(b.v);
            boolean ok;
            switch (b.op) {
                case "=": ok = c == 0; break;
                case ">": ok = c > 0; break;
                case ">=": ok = c >= 0; break;
                case "<": ok = c < 0; break;
                default: ok = c <= 0; break;
            }
            if (!ok) {
                return false;
            }
        }
        return true;
    }

    @Override
    public String toString() {
        return "VersionFilter(" + text + ")";
    }
}
