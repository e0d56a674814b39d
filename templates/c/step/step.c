/* The `{{name}}` step: a tether step component written in C (clang + wasi-libc).
 *
 * It receives the run's (or the previous step's) JSON input and returns JSON. Replace the
 * body of the run function with your own logic; the host calls it once per attempt, in a
 * fresh sandbox. Ownership: the input is ours to free; what we return must be malloc'ed
 * (the generated post-return function frees it). */
#include <stdlib.h>
#include <string.h>

#include "step_plugin.h"
#include "tether_json.h"

static bool fail(exports_tether_plugin_step_failure_t *err, const char *message) {
    /* Returning false with a failure ends the step with class `guest_error`. */
    err->kind = TETHER_PLUGIN_TYPES_FAILURE_KIND_INVALID_INPUT;
    step_plugin_string_dup(&err->message, message);
    return false;
}

bool exports_tether_plugin_step_run(exports_tether_plugin_step_json_t *input, exports_tether_plugin_step_json_t *ret,
                                    exports_tether_plugin_step_failure_t *err) {
    const char *json = (const char *)input->ptr;
    size_t len = input->len, n = 0;
    while (len > 0 && (*json == ' ' || *json == '\n' || *json == '\t' || *json == '\r')) json++, len--;
    if (len == 0 || *json != '{') {
        exports_tether_plugin_step_json_free(input);
        return fail(err, "input must be a JSON object");
    }
    char *who = tj_get_string(json, len, "name", &n);
    char *tool = tj_get_string(json, len, "tool", NULL);
    exports_tether_plugin_step_json_free(input);
    if (!who) who = strdup("world"), n = 5;

    tj_buf line = {0};
    tj_text(&line, "greeting ");
    tj_raw(&line, who, n);
    step_plugin_string_t message;
    step_plugin_string_set(&message, line.ptr);
    tether_plugin_host_log(TETHER_PLUGIN_TYPES_LEVEL_INFO, &message);
    free(line.ptr);

    /* Tools are called by name; the workflow must grant them to this step. */
    tj_buf answer = {0};
    if (tool) {
        tj_buf request = {0};
        tj_text(&request, "{\"text\":");
        tj_string(&request, who, n);
        tj_text(&request, "}");
        step_plugin_string_t name, body;
        step_plugin_string_set(&name, tool);
        step_plugin_string_set(&body, request.ptr);
        tether_plugin_host_json_t result;
        tether_plugin_host_failure_t tool_err;
        bool ok = tether_plugin_host_call_tool(&name, &body, &result, &tool_err);
        free(request.ptr);
        free(tool);
        if (!ok) { /* pass the tool's failure on, with its kind */
            free(who);
            *err = tool_err;
            return false;
        }
        tj_raw(&answer, (const char *)result.ptr, result.len);
        tether_plugin_host_json_free(&result);
    } else {
        tj_text(&answer, "null");
    }

    /* Usage the host cannot measure itself (model tokens, money) is reported by name. */
    step_plugin_string_t metric;
    step_plugin_string_set(&metric, "tokens");
    tether_plugin_host_report_usage(&metric, 1.0);

    tj_buf out = {0};
    tj_text(&out, "{\"greeting\":");
    tj_buf greeting = {0};
    tj_text(&greeting, "hello, ");
    tj_raw(&greeting, who, n);
    tj_string(&out, greeting.ptr, greeting.len);
    tj_text(&out, ",\"step\":\"{{name}}\",\"tool\":");
    tj_raw(&out, answer.ptr, answer.len);
    tj_text(&out, "}");
    free(greeting.ptr);
    free(answer.ptr);
    free(who);
    ret->ptr = (uint8_t *)out.ptr;
    ret->len = out.len;
    return true;
}
