/* The `{{name}}` tool: a tether tool component written in C (clang + wasi-libc).
 *
 * Steps call it by name with JSON input (`call-tool`); each call runs in its own sandbox.
 * `describe` tells the host and the steps what it does and what it changes in the world. */
#include <stdlib.h>

#include "tether_json.h"
#include "tool_plugin.h"

void exports_tether_plugin_tool_describe(exports_tether_plugin_tool_descriptor_t *ret) {
    tool_plugin_string_dup(&ret->name, "{{name}}");
    tool_plugin_string_dup(&ret->description, "Counts the bytes of a text.");
    tool_plugin_string_dup(&ret->input_schema,
                           "{\"type\":\"object\",\"required\":[\"text\"],\"properties\":{\"text\":{\"type\":\"string\"}}}");
    tool_plugin_string_dup(&ret->output_schema, "{\"type\":\"object\",\"properties\":{\"chars\":{\"type\":\"integer\"}}}");
    /* READ_ONLY, IDEMPOTENT or EXTERNAL: policies and approvals look at it. */
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
    free(text);
    tool_plugin_string_t metric;
    tool_plugin_string_set(&metric, "chars");
    tether_plugin_tool_host_report_usage(&metric, (double)n);

    tj_buf out = {0};
    tj_text(&out, "{\"tool\":\"{{name}}\",\"chars\":");
    tj_int(&out, (long long)n);
    tj_text(&out, "}");
    tool_plugin_string_t message;
    tool_plugin_string_set(&message, out.ptr);
    tether_plugin_tool_host_log(TETHER_PLUGIN_TYPES_LEVEL_DEBUG, &message);
    ret->ptr = (uint8_t *)out.ptr;
    ret->len = out.len;
    return true;
}
