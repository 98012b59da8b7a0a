package dev.plum.sdk;

import com.fasterxml.jackson.databind.JsonNode;

/** What a KV write answered: the key's new version. */
public final class KvWritten {
    private final String namespace;
    private final String key;
    private final String value;
    private final String type;
    private final long version;

    KvWritten(String namespace, String key, String value, String type, long version) {
        this.namespace = namespace;
        this.key = key;
        this.value = value;
        this.type = type;
        this.version = version;
    }

    static KvWritten fromJson(JsonNode d) {
        return new KvWritten(Json.asText(d, "namespace", ""), Json.asText(d, "key", ""), Json.asText(d, "value", ""),
                Json.asText(d, "type", "string"), Json.asLong(d, "version"));
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

    public String type() {
        return type;
    }

    public long version() {
        return version;
    }

    @Override
    public String toString() {
        return "KvWritten(" + namespace + "/" + key + ", v" + version + ")";
    }
}
