package dev.plum.sdk;

import com.fasterxml.jackson.databind.JsonNode;

/** One config KV item as the cluster holds it. */
public final class KvItem {
    private final String namespace;
    private final String key;
    private final String value;
    private final String type;
    private final long updatedAt;
    private final long version;
    private final long modIndex;

    public KvItem(String namespace, String key, String value, String type, long updatedAt, long version, long modIndex) {
        this.namespace = namespace;
        this.key = key;
        this.value = value;
        this.type = type;
        this.updatedAt = updatedAt;
        this.version = version;
        this.modIndex = modIndex;
    }

    static KvItem fromJson(JsonNode d) {
        return new KvItem(Json.asText(d, "namespace", ""), Json.asText(d, "key", ""), Json.asText(d, "value", ""),
                Json.asText(d, "type", "string"), Json.asLong(d, "updatedAt"), Json.asLong(d, "version"),
                Json.asLong(d, "modIndex"));
    }

    public String namespace() {
        return namespace;
    }

    public String key() {
        return key;
    }

    public String value() {
        return value;
    }

    /** {@code string}, {@code int}, {@code double}, {@code bool} or {@code bytes}. */
    public String type() {
        return type;
    }

    public long updatedAt() {
        return updatedAt;
    }

    /** Starts at 1, +1 per write: what {@code expectVersion} compares with. */
    public long version() {
        return version;
    }

    public long modIndex() {
        return modIndex;
    }

    @Override
    public String toString() {
        return "KvItem(" + namespace + "/" + key + "=" + value + ", v" + version + ")";
    }
}
