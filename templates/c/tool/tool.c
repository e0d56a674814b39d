/* The `{{name}}` tool: a tether tool component written in C (clang + wasi-libc).
 *
 * Steps call it by name with JSON input (`call-tool`); each call runs in its own sandbox.
 * `describe` tells the host and the steps what it does and what it changes in the world. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tether_json.h"
#include "tool_plugin.h"

/* Where the tool records its results by idempotency key, if the workflow grants it this
 * directory: dirs = [{ host = "state", guest = "/state", write = true }] in [tools.{{name}}]. */
#define STATE "/state"

typedef exports_tether_plugin_tool_failure_t failure_t;

static bool fail(failure_t *err, tether_plugin_types_failure_kind_t kind, const char *message) {
    err->kind = kind;
    tool_plugin_string_dup(&err->message, message);
    return false;
}

void exports_tether_plugin_tool_describe(exports_tether_plugin_tool_descriptor_t *ret) {
    tool_plugin_string_dup(&ret->name, "{{name}}");
    tool_plugin_string_dup(&ret->description, "Counts the bytes of a text.");
    tool_plugin_string_dup(&ret->input_schema,
                           "{\"type\":\"object\",\"required\":[\"text\"],\"properties\":{\"text\":{\"type\":\"string\"}}}");
    tool_plugin_string_dup(&ret->output_schema, "{\"type\":\"object\",\"properties\":{\"chars\":{\"type\":\"integer\"}}}");
    /* READ_ONLY, IDEMPOTENT or EXTERNAL: policies and approvals look at it. */
    ret->effect = TETHER_PLUGIN_TYPES_EFFECT_READ_ONLY;
}

/* The tool's work: its JSON answer in `out`, or false with `err` set if it did nothing. */
typedef bool (*action_t)(void *ctx, tj_buf *out, failure_t *err);

/* Runs `act` at most once per idempotency key, however often the call is repeated
 * (retries, resumes after a crash, two hosts at once), and gives its result each time.
 *
 * The claim is atomic: creating /state/<the key in hex> with O_CREAT|O_EXCL succeeds for
 * exactly one call per key; only that call acts, then writes its result into the file.
 * Every other call returns the recorded result instead of acting again. When `act` fails
 * it did nothing, so the claim is removed and a retry may act. If the tool is killed after
 * claiming and before recording, whether `act` happened is unknown, so later calls fail
 * rather than act again. */
static bool at_most_once(action_t act, void *ctx, tj_buf *out, failure_t *err) {
    const tether_plugin_types_failure_kind_t internal = TETHER_PLUGIN_TYPES_FAILURE_KIND_INTERNAL;
    tool_plugin_string_t key;
    tether_plugin_tool_host_idempotency_key(&key);
    if (key.len > 127) { /* its hex would not fit in a file name */
        tool_plugin_string_free(&key);
        return fail(err, internal, "the idempotency key is longer than 127 bytes");
    }
    char path[sizeof STATE "/" + 2 * 127]; /* the key in hex: a safe file name */
    int len = sprintf(path, "%s/", STATE);
    for (size_t i = 0; i < key.len; i++) len += sprintf(path + len, "%02x", key.ptr[i]);
    tool_plugin_string_free(&key);

    int fd = open(path, O_CREAT | O_EXCL | O_WRONLY, 0644);
    if (fd < 0 && errno == EEXIST) {
        /* Another call with this key claimed it: return what it recorded. */
        FILE *f = fopen(path, "r");
        if (!f) return fail(err, internal, strerror(errno));
        char chunk[4096];
        size_t got;
        while ((got = fread(chunk, 1, sizeof chunk, f)) > 0) tj_raw(out, chunk, got);
        fclose(f);
        /* One line: a record without its final newline was cut short. */
        if (out->len > 0 && out->ptr[out->len - 1] == '\n') {
            out->ptr[--out->len] = 0;
            return true;
        }
        free(out->ptr);
        *out = (tj_buf){0};
        return fail(err, internal, "a call with this idempotency key started and recorded no result: not repeated");
    }
    if (fd < 0) return fail(err, internal, strerror(errno));
    if (!act(ctx, out, err)) {
        close(fd);
        unlink(path);
        return false;
    }
    bool ok = write(fd, out->ptr, out->len) == (ssize_t)out->len && write(fd, "\n", 1) == 1 && fsync(fd) == 0;
    int error = errno;
    close(fd);
    if (!ok) {
        free(out->ptr);
        *out = (tj_buf){0};
        return fail(err, internal, strerror(error));
    }
    return true;
}

static bool count(void *ctx, tj_buf *out, failure_t *err) {
    (void)err;
    size_t n = *(size_t *)ctx;
    tool_plugin_string_t metric;
    tool_plugin_string_set(&metric, "chars");
    tether_plugin_tool_host_report_usage(&metric, (double)n);

    tj_text(out, "{\"tool\":\"{{name}}\",\"chars\":");
    tj_int(out, (long long)n);
    tj_text(out, "}");
    tool_plugin_string_t message;
    tool_plugin_string_set(&message, out->ptr);
    tether_plugin_tool_host_log(TETHER_PLUGIN_TYPES_LEVEL_DEBUG, &message);
    return true;
}

bool exports_tether_plugin_tool_call(exports_tether_plugin_tool_json_t *input, exports_tether_plugin_tool_json_t *ret,
                                     failure_t *err) {
    size_t n = 0;
    char *text = tj_get_string((const char *)input->ptr, input->len, "text", &n);
    exports_tether_plugin_tool_json_free(input);
    if (!text) return fail(err, TETHER_PLUGIN_TYPES_FAILURE_KIND_INVALID_INPUT, "expected {\"text\": string}");
    free(text);

    /* Counting changes nothing, so it needs no idempotency. A tool with an external effect
     * (it pays, sends mail) declares EXTERNAL and does the effect inside at_most_once, as
     * this one does with its count when /state is granted. */
    tj_buf out = {0};
    struct stat st;
    bool ok = stat(STATE, &st) == 0 && S_ISDIR(st.st_mode) ? at_most_once(count, &n, &out, err)
                                                             : count(&n, &out, err);
    if (!ok) return false;
    ret->ptr = (uint8_t *)out.ptr;
    ret->len = out.len;
    return true;
}
