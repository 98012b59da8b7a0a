package dev.plum.sdk;

import com.fasterxml.jackson.databind.JsonNode;
import java.util.OptionalLong;

/** A successful (2xx) answer: status, {@code x-plum-index} when present, body text. */
public final class Answer {
    private final int status;
    private final OptionalLong index;
    private final String text;

    Answer(int status, OptionalLong index, String text) {
        this.status = status;
        this.index = index;
        this.text = text;
    }

    public int status() {
        return status;
    }

    /** {@code x-plum-index} (a long poll's next index; a read's change index). */
    public OptionalLong index() {
        return index;
    }

    public String text() {
        return text;
    }

    /** The body as JSON ({@code null} when empty). */
    public JsonNode json() {
        return Json.parse(text);
    }
}
