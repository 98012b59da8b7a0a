package dev.plum.sdk;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.nio.charset.StandardCharsets;

/** JSON through one shared Jackson {@link ObjectMapper} (thread-safe once configured). */
public final class Json {
    static final ObjectMapper MAPPER = new ObjectMapper();

    private Json() {
    }

    public static ObjectNode object() {
        return MAPPER.createObjectNode();
    }

    /** A JSON answer; an empty body is {@code null}. */
    public static JsonNode parse(String text) {
        if (text == null || text.isEmpty()) {
            return null;
        }
        try {
            return MAPPER.readTree(text);
        } catch (JsonProcessingException e) {
            throw new PlumException.DecodeError(e.getOriginalMessage() + ": " + PlumException.clip(text));
        } catch (java.io.IOException e) {
            throw new PlumException.DecodeError(e.getMessage() + ": " + PlumException.clip(text));
        }
    }

    static JsonNode tryParse(String text) {
        try {
            return parse(text);
        } catch (PlumException e) {
            return null;
        }
    }

    /** Encodes once, so that every attempt of a call sends the same bytes. */
    public static byte[] encode(Object value) {
        try {
            return MAPPER.writeValueAsString(value).getBytes(StandardCharsets.UTF_8);
        } catch (java.io.IOException e) {
            throw new IllegalArgumentException("not encodable as JSON: " + e.getMessage(), e);
        }
    }

    static long asLong(JsonNode n, String field) {
        JsonNode v = n == null ? null : n.get(field);
        if (v == null || v.isNull()) {
            return 0;
        }
        if (v.canConvertToLong()) {
            return v.asLong();
        }
        try {
            return Long.parseLong(v.asText().strip());
        } catch (NumberFormatException e) {
            return 0;
        }
    }

    static String asText(JsonNode n, String field, String otherwise) {
        JsonNode v = n == null ? null : n.get(field);
        return v == null || v.isNull() ? otherwise : v.asText();
    }
}
