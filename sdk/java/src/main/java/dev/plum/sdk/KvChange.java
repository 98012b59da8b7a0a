package dev.plum.sdk;

import java.util.List;

/** The items under a watched prefix after a change, and the change's index. */
public final class KvChange {
    private final long index;
    private final List<KvItem> items;

    KvChange(long index, List<KvItem> items) {
        this.index = index;
        this.items = List.copyOf(items);
    }

    /** Where the watch stands after this change (pass it to resume). */
    public long index() {
        return index;
    }

    public List<KvItem> items() {
        return items;
    }

    @Override
    public String toString() {
        return "KvChange(index=" + index + ", " + items.size() + " item(s))";
    }
}
