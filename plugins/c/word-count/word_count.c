/* Mixed-language example, tool (C): count the words, lines and bytes of a text.
 * Read-only and deterministic. Logs its count and reports the bytes it read as usage. */
#include <ctype.h>
#include <stdlib.h>

#include "tether_json.h"
#include "tool_plugin.h"

void exports_tether_plugin_tool_describe(exports_tether_plugin_tool_descriptor_t *ret) {
    tool_plugin_string_dup(&ret->name, "word-count");
    tool_plugin_string_dup(&ret->description, "Counts the words, lines and bytes of a text.");
    tool_plugin_string_dup(&ret->input_schema,
                           "{\"type\":\"object\",\"required\":[\"text\"],\"properties\":{\"text\":{\"type\":\"string\"}}}");
    tool_plugin_string_dup(&ret->output_schema,
                           "{\"type\":\"object\",\"properties\":{\"words\":{\"type\":\"integer\"},"
                           "\"lines\":{\"type\":\"integer\"},\"bytes\":{\"type\":\"integer\"}}}");
    ret->effect = TETHER_PLUGIN_TYPES_EFFECT_READ_ONLY;
}

bool exports_tether_plugin_tool_call(exports_tether_plugin_tool_json_t *input, exports_tether_plugin_tool_json_t *ret,
                                     exports_tether_plugin_tool_failure_t *err) {
    size_t n = 0;
    char *text = tj_get_string((const char *)input->ptr, input->len, "text", &n);
    exports_tether_plugin_tool_json_free(input);
    if (!text) {
        err->kind = TETHER_PLUGIN_TYPES_FAILURE_KIND_INVALID_INPUT;
        tool_plugin_string_dup(&err->message, "expected {\"text\": string}");
        return false;
    }
    long long words = 0, lines = n > 0 ? 1 : 0;
    bool in_word = false;
    for (size_t i = 0; i < n; i++) {
        if (text[i] == '\n') lines++;
        bool space = isspace((unsigned char)text[i]);
        if (!space && !in_word) words++;
        in_word = !space;
    }
    free(text);

    tj_buf out = {0};
    tj_text(&out, "{\"words\":");
    tj_int(&out, words);
    tj_text(&out, ",\"lines\":");
    tj_int(&out, lines);
    tj_text(&out, ",\"bytes\":");
    tj_int(&out, (long long)n);
    tj_text(&out, "}");

    tool_plugin_string_t message, metric;
    tool_plugin_string_set(&message, out.ptr);
    tether_plugin_tool_host_log(TETHER_PLUGIN_TYPES_LEVEL_DEBUG, &message);
    tool_plugin_string_set(&metric, "bytes_counted");
    tether_plugin_tool_host_report_usage(&metric, (double)n);

    ret->ptr = (uint8_t *)out.ptr;
    ret->len = out.len;
    return true;
}
