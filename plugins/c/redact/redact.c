/* Mixed-language example, step 2 (C): redact e-mail addresses and long numbers (account,
 * card or phone numbers) from a message before a model sees it.
 *
 * Input {"text": "..."}; output {"text": redacted, "redactions": n, "words": n}. It logs,
 * asks the `word-count` tool for the redacted text's size, reports the characters it
 * scanned as usage, and returns an `invalid-input` failure when `text` is missing. */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "step_plugin.h"
#include "tether_json.h"

static void info(const char *message) {
    step_plugin_string_t s;
    step_plugin_string_set(&s, message);
    tether_plugin_host_log(TETHER_PLUGIN_TYPES_LEVEL_INFO, &s);
}

static bool fail(exports_tether_plugin_step_failure_t *err, tether_plugin_types_failure_kind_t kind, const char *msg) {
    err->kind = kind;
    step_plugin_string_dup(&err->message, msg); /* the generated post-return frees it */
    return false;
}

static bool is_word_char(char c) { return isalnum((unsigned char)c) || c == '.' || c == '_' || c == '-' || c == '+'; }

/* Copies `text` to `out`, replacing e-mail addresses by [email] and runs of 6 or more
 * digits by [number]. Returns how many it replaced. */
static int redact(const char *text, size_t n, tj_buf *out) {
    int count = 0;
    size_t i = 0;
    while (i < n) {
        size_t start = i;
        while (i < n && is_word_char(text[i])) i++;
        if (i > start && i < n && text[i] == '@') {
            size_t end = i + 1;
            while (end < n && is_word_char(text[end])) end++;
            while (end > i + 1 && text[end - 1] == '.') end--; /* a full stop ends the sentence, not the address */
            if (end > i + 1 && memchr(text + i + 1, '.', end - i - 1)) {
                tj_text(out, "[email]");
                count++;
                i = end;
                continue;
            }
        }
        i = start;
        if (isdigit((unsigned char)text[i])) {
            size_t end = i;
            while (end < n && isdigit((unsigned char)text[end])) end++;
            if (end - i >= 6) {
                tj_text(out, "[number]");
                count++;
                i = end;
                continue;
            }
            tj_raw(out, text + i, end - i);
            i = end;
            continue;
        }
        tj_raw(out, text + i, 1);
        i++;
    }
    return count;
}

bool exports_tether_plugin_step_run(exports_tether_plugin_step_json_t *input, exports_tether_plugin_step_json_t *ret,
                                    exports_tether_plugin_step_failure_t *err) {
    size_t n = 0;
    char *text = tj_get_string((const char *)input->ptr, input->len, "text", &n);
    exports_tether_plugin_step_json_free(input);
    if (!text) return fail(err, TETHER_PLUGIN_TYPES_FAILURE_KIND_INVALID_INPUT, "`text` must be a string");

    tj_buf redacted = {0};
    tj_raw(&redacted, "", 0);
    int count = redact(text, n, &redacted);
    free(text);

    tj_buf request = {0};
    tj_text(&request, "{\"text\":");
    tj_string(&request, redacted.ptr, redacted.len);
    tj_text(&request, "}");
    step_plugin_string_t tool, tool_input;
    step_plugin_string_set(&tool, "word-count");
    step_plugin_string_set(&tool_input, request.ptr);
    tether_plugin_host_json_t counted;
    tether_plugin_host_failure_t tool_err;
    if (!tether_plugin_host_call_tool(&tool, &tool_input, &counted, &tool_err)) {
        /* Pass the tool's failure on, with its kind. */
        err->kind = tool_err.kind;
        err->message = tool_err.message;
        free(request.ptr);
        free(redacted.ptr);
        return false;
    }
    free(request.ptr);
    long long words = tj_get_int((const char *)counted.ptr, counted.len, "words", -1);
    tether_plugin_host_json_free(&counted);

    tj_buf line = {0};
    tj_text(&line, "redacted ");
    tj_int(&line, count);
    tj_text(&line, count == 1 ? " item, " : " items, ");
    tj_int(&line, words);
    tj_text(&line, " words left");
    info(line.ptr);
    free(line.ptr);

    step_plugin_string_t metric;
    step_plugin_string_set(&metric, "chars_scanned");
    tether_plugin_host_report_usage(&metric, (double)n);

    tj_buf out = {0};
    tj_text(&out, "{\"text\":");
    tj_string(&out, redacted.ptr, redacted.len);
    tj_text(&out, ",\"redactions\":");
    tj_int(&out, count);
    tj_text(&out, ",\"words\":");
    tj_int(&out, words);
    tj_text(&out, "}");
    free(redacted.ptr);
    ret->ptr = (uint8_t *)out.ptr; /* malloc'ed; the generated post-return frees it */
    ret->len = out.len;
    return true;
}
