/* A very small JSON helper for tether guests written in C: read a string or number field
 * of a flat JSON object, and build JSON output with correct string escaping. It is not a
 * general JSON library; use one (cJSON, yyjson) when a step handles richer documents.
 *
 * Header-only: include it in exactly the files that use it (functions are `static inline`).
 * Strings returned are malloc'ed and NUL-terminated; the caller frees them. */
#ifndef TETHER_JSON_H
#define TETHER_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A growable output buffer. Start with `tj_buf b = {0};`. */
typedef struct {
    char *ptr;
    size_t len, cap;
} tj_buf;

static inline void tj_raw(tj_buf *b, const char *s, size_t n) {
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->len + n + 1) cap *= 2;
        b->ptr = realloc(b->ptr, cap);
        if (!b->ptr) abort();
        b->cap = cap;
    }
    memcpy(b->ptr + b->len, s, n);
    b->len += n;
    b->ptr[b->len] = 0;
}

static inline void tj_text(tj_buf *b, const char *s) { tj_raw(b, s, strlen(s)); }

static inline void tj_int(tj_buf *b, long long v) {
    char tmp[32];
    tj_raw(b, tmp, (size_t)snprintf(tmp, sizeof tmp, "%lld", v));
}

/* Appends `s` (n bytes of UTF-8) as a quoted JSON string. */
static inline void tj_string(tj_buf *b, const char *s, size_t n) {
    tj_raw(b, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        char esc[8];
        switch (c) {
        case '"': tj_raw(b, "\\\"", 2); break;
        case '\\': tj_raw(b, "\\\\", 2); break;
        case '\n': tj_raw(b, "\\n", 2); break;
        case '\r': tj_raw(b, "\\r", 2); break;
        case '\t': tj_raw(b, "\\t", 2); break;
        default:
            if (c < 0x20) {
                tj_raw(b, esc, (size_t)snprintf(esc, sizeof esc, "\\u%04x", c));
            } else {
                tj_raw(b, (const char *)&c, 1);
            }
        }
    }
    tj_raw(b, "\"", 1);
}

/* --- reading ------------------------------------------------------------------------ */

typedef struct {
    const char *p, *end;
} tj_cursor;

static inline void tj_ws(tj_cursor *c) {
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\n' || *c->p == '\r' || *c->p == '\t')) c->p++;
}

static inline int tj_hex4(const char *p) {
    int v = 0;
    for (int i = 0; i < 4; i++) {
        char h = p[i];
        v <<= 4;
        if (h >= '0' && h <= '9') v |= h - '0';
        else if (h >= 'a' && h <= 'f') v |= h - 'a' + 10;
        else if (h >= 'A' && h <= 'F') v |= h - 'A' + 10;
        else return -1;
    }
    return v;
}

static inline void tj_utf8(tj_buf *b, uint32_t cp) {
    char u[4];
    size_t n;
    if (cp < 0x80) { u[0] = (char)cp; n = 1; }
    else if (cp < 0x800) { u[0] = (char)(0xC0 | cp >> 6); u[1] = (char)(0x80 | (cp & 0x3F)); n = 2; }
    else if (cp < 0x10000) {
        u[0] = (char)(0xE0 | cp >> 12); u[1] = (char)(0x80 | ((cp >> 6) & 0x3F)); u[2] = (char)(0x80 | (cp & 0x3F)); n = 3;
    } else {
        u[0] = (char)(0xF0 | cp >> 18); u[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
        u[2] = (char)(0x80 | ((cp >> 6) & 0x3F)); u[3] = (char)(0x80 | (cp & 0x3F)); n = 4;
    }
    tj_raw(b, u, n);
}

/* Reads a string at the cursor (which is at its opening quote). With `out`, decodes it
 * into `out`; without, only skips it. False if it is malformed. */
static inline bool tj_read_string(tj_cursor *c, tj_buf *out) {
    if (c->p >= c->end || *c->p != '"') return false;
    c->p++;
    while (c->p < c->end) {
        char ch = *c->p++;
        if (ch == '"') {
            if (out) tj_raw(out, "", 0);
            return true;
        }
        if (ch != '\\') {
            if (out) tj_raw(out, &ch, 1);
            continue;
        }
        if (c->p >= c->end) return false;
        char e = *c->p++;
        const char *plain = NULL;
        switch (e) {
        case '"': plain = "\""; break;
        case '\\': plain = "\\"; break;
        case '/': plain = "/"; break;
        case 'b': plain = "\b"; break;
        case 'f': plain = "\f"; break;
        case 'n': plain = "\n"; break;
        case 'r': plain = "\r"; break;
        case 't': plain = "\t"; break;
        case 'u': {
            if (c->end - c->p < 4) return false;
            int cp = tj_hex4(c->p);
            if (cp < 0) return false;
            c->p += 4;
            if (cp >= 0xD800 && cp <= 0xDBFF && c->end - c->p >= 6 && c->p[0] == '\\' && c->p[1] == 'u') {
                int lo = tj_hex4(c->p + 2);
                if (lo >= 0xDC00 && lo <= 0xDFFF) {
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                    c->p += 6;
                }
            }
            if (out) tj_utf8(out, (uint32_t)cp);
            continue;
        }
        default: return false;
        }
        if (out) tj_raw(out, plain, 1);
    }
    return false;
}

/* Skips one value of any type (nested objects and arrays included). */
static inline bool tj_skip(tj_cursor *c) {
    tj_ws(c);
    if (c->p >= c->end) return false;
    if (*c->p == '"') return tj_read_string(c, NULL);
    if (*c->p == '{' || *c->p == '[') {
        int depth = 0;
        while (c->p < c->end) {
            char ch = *c->p;
            if (ch == '"') {
                if (!tj_read_string(c, NULL)) return false;
                continue;
            }
            c->p++;
            if (ch == '{' || ch == '[') depth++;
            if (ch == '}' || ch == ']') {
                if (--depth == 0) return true;
            }
        }
        return false;
    }
    while (c->p < c->end && *c->p != ',' && *c->p != '}' && *c->p != ']') c->p++;
    return true;
}

/* Moves the cursor to the value of top-level field `key` of the object in `json`. */
static inline bool tj_find(const char *json, size_t len, const char *key, tj_cursor *c) {
    c->p = json;
    c->end = json + len;
    tj_ws(c);
    if (c->p >= c->end || *c->p++ != '{') return false;
    for (;;) {
        tj_ws(c);
        if (c->p < c->end && *c->p == '}') return false;
        tj_buf name = {0};
        bool ok = tj_read_string(c, &name);
        bool match = ok && name.ptr && strcmp(name.ptr, key) == 0;
        free(name.ptr);
        if (!ok) return false;
        tj_ws(c);
        if (c->p >= c->end || *c->p++ != ':') return false;
        tj_ws(c);
        if (match) return true;
        if (!tj_skip(c)) return false;
        tj_ws(c);
        if (c->p < c->end && *c->p == ',') c->p++;
    }
}

/* The string field `key` of a flat JSON object, decoded (malloc'ed), or NULL when it is
 * missing, not a string, or the document is malformed. `*n` receives its length. */
static char *tj_get_string(const char *json, size_t len, const char *key, size_t *n) {
    tj_cursor c;
    if (!tj_find(json, len, key, &c)) return NULL;
    tj_buf out = {0};
    if (!tj_read_string(&c, &out)) {
        free(out.ptr);
        return NULL;
    }
    if (!out.ptr) tj_raw(&out, "", 0);
    if (n) *n = out.len;
    return out.ptr;
}

/* The integer field `key`, or `fallback` when it is missing or not a number. */
static inline long long tj_get_int(const char *json, size_t len, const char *key, long long fallback) {
    tj_cursor c;
    if (!tj_find(json, len, key, &c) || c.p >= c.end) return fallback;
    bool negative = *c.p == '-';
    if (negative) c.p++;
    if (c.p >= c.end || *c.p < '0' || *c.p > '9') return fallback;
    long long v = 0;
    /* Input strings are not NUL-terminated, so no strtoll: digits up to the end. */
    while (c.p < c.end && *c.p >= '0' && *c.p <= '9' && v < 100000000000000000LL) v = v * 10 + (*c.p++ - '0');
    return negative ? -v : v;
}

#endif
