/*
 * courier_json: see courier_json.h. A validating recursive-descent scanner over the payload
 * bytes; the one string asked for is decoded, everything else is only checked and skipped.
 */
#include "courier_json.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
    const uint8_t *p;
    const uint8_t *end;
} scanner;

static void skip_ws(scanner *s) {
    while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r')) {
        s->p++;
    }
}

static int hex_value(uint8_t c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Reads the 4 hex digits after `\u`; -1 if they are not there. */
static long read_hex4(scanner *s) {
    if (s->end - s->p < 4) return -1;
    long v = 0;
    for (int i = 0; i < 4; i++) {
        int h = hex_value(s->p[i]);
        if (h < 0) return -1;
        v = (v << 4) | h;
    }
    s->p += 4;
    return v;
}

/* Length of the valid UTF-8 sequence starting at p (1..4), or 0 if it is not valid. */
static size_t utf8_sequence(const uint8_t *p, const uint8_t *end) {
    uint8_t c = p[0];
    size_t n;
    uint32_t cp;
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) { n = 2; cp = c & 0x1F; }
    else if (c >= 0xE0 && c <= 0xEF) { n = 3; cp = c & 0x0F; }
    else if (c >= 0xF0 && c <= 0xF4) { n = 4; cp = c & 0x07; }
    else return 0;
    if ((size_t)(end - p) < n) return 0;
    for (size_t i = 1; i < n; i++) {
        if ((p[i] & 0xC0) != 0x80) return 0;
        cp = (cp << 6) | (p[i] & 0x3F);
    }
    /* Reject overlong forms, surrogates and values past U+10FFFF. */
    if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10FFFF))) return 0;
    if (cp >= 0xD800 && cp <= 0xDFFF) return 0;
    return n;
}

static size_t put_utf8(uint8_t *out, uint32_t cp) {
    if (cp < 0x80) { out[0] = (uint8_t)cp; return 1; }
    if (cp < 0x800) {
        out[0] = (uint8_t)(0xC0 | (cp >> 6));
        out[1] = (uint8_t)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (uint8_t)(0xE0 | (cp >> 12));
        out[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (uint8_t)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (uint8_t)(0xF0 | (cp >> 18));
    out[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (uint8_t)(0x80 | (cp & 0x3F));
    return 4;
}

/*
 * Scans a string whose opening quote is at s->p. When `out` is not NULL, the decoded bytes
 * are written there (the decoded form is never longer than the encoded one, so a buffer of
 * the encoded length is enough) and their count stored in *out_len.
 */
static bool scan_string(scanner *s, uint8_t *out, size_t *out_len) {
    size_t n = 0;
    if (s->p >= s->end || *s->p != '"') return false;
    s->p++;
    while (s->p < s->end) {
        uint8_t c = *s->p;
        if (c == '"') {
            s->p++;
            if (out_len) *out_len = n;
            return true;
        }
        if (c < 0x20) return false; /* control characters must be escaped */
        if (c != '\\') {
            size_t len = utf8_sequence(s->p, s->end);
            if (len == 0) return false;
            if (out) memcpy(out + n, s->p, len);
            n += len;
            s->p += len;
            continue;
        }
        s->p++; /* the backslash */
        if (s->p >= s->end) return false;
        uint8_t e = *s->p++;
        uint32_t cp;
        switch (e) {
        case '"': cp = '"'; break;
        case '\\': cp = '\\'; break;
        case '/': cp = '/'; break;
        case 'b': cp = '\b'; break;
        case 'f': cp = '\f'; break;
        case 'n': cp = '\n'; break;
        case 'r': cp = '\r'; break;
        case 't': cp = '\t'; break;
        case 'u': {
            long hi = read_hex4(s);
            if (hi < 0) return false;
            if (hi >= 0xDC00 && hi <= 0xDFFF) return false; /* a lone low surrogate */
            if (hi >= 0xD800 && hi <= 0xDBFF) {
                /* A high surrogate must be followed by an escaped low surrogate. */
                if (s->end - s->p < 2 || s->p[0] != '\\' || s->p[1] != 'u') return false;
                s->p += 2;
                long lo = read_hex4(s);
                if (lo < 0xDC00 || lo > 0xDFFF) return false;
                cp = 0x10000 + (((uint32_t)hi - 0xD800) << 10) + ((uint32_t)lo - 0xDC00);
            } else {
                cp = (uint32_t)hi;
            }
            break;
        }
        default:
            return false;
        }
        if (out) {
            n += put_utf8(out + n, cp);
        } else {
            n += 1;
        }
    }
    return false; /* unterminated */
}

static bool scan_digits(scanner *s) {
    const uint8_t *start = s->p;
    while (s->p < s->end && *s->p >= '0' && *s->p <= '9') s->p++;
    return s->p > start;
}

static bool scan_number(scanner *s) {
    if (s->p < s->end && *s->p == '-') s->p++;
    if (s->p < s->end && *s->p == '0') {
        s->p++;
    } else if (!scan_digits(s)) {
        return false;
    }
    if (s->p < s->end && *s->p == '.') {
        s->p++;
        if (!scan_digits(s)) return false;
    }
    if (s->p < s->end && (*s->p == 'e' || *s->p == 'E')) {
        s->p++;
        if (s->p < s->end && (*s->p == '+' || *s->p == '-')) s->p++;
        if (!scan_digits(s)) return false;
    }
    return true;
}

static bool scan_literal(scanner *s, const char *word) {
    size_t n = strlen(word);
    if ((size_t)(s->end - s->p) < n || memcmp(s->p, word, n) != 0) return false;
    s->p += n;
    return true;
}

static bool scan_value(scanner *s, int depth);

static bool scan_container(scanner *s, int depth, bool object) {
    uint8_t close = object ? '}' : ']';
    if (depth >= COURIER_JSON_MAX_DEPTH) return false;
    s->p++; /* the opening bracket */
    skip_ws(s);
    if (s->p < s->end && *s->p == close) {
        s->p++;
        return true;
    }
    for (;;) {
        if (object) {
            skip_ws(s);
            if (!scan_string(s, NULL, NULL)) return false;
            skip_ws(s);
            if (s->p >= s->end || *s->p != ':') return false;
            s->p++;
        }
        if (!scan_value(s, depth + 1)) return false;
        skip_ws(s);
        if (s->p >= s->end) return false;
        if (*s->p == ',') {
            s->p++;
            continue;
        }
        if (*s->p == close) {
            s->p++;
            return true;
        }
        return false;
    }
}

/* Scans one value (with the whitespace before it). */
static bool scan_value(scanner *s, int depth) {
    skip_ws(s);
    if (s->p >= s->end) return false;
    switch (*s->p) {
    case '{': return scan_container(s, depth, true);
    case '[': return scan_container(s, depth, false);
    case '"': return scan_string(s, NULL, NULL);
    case 't': return scan_literal(s, "true");
    case 'f': return scan_literal(s, "false");
    case 'n': return scan_literal(s, "null");
    default: return scan_number(s);
    }
}

/* Does the string token at s->p (valid, already scanned once) decode to exactly `key`? */
static bool string_equals(const uint8_t *token, const uint8_t *end, const char *key) {
    size_t key_len = strlen(key);
    scanner t = {token, end};
    size_t token_len = (size_t)(end - token);
    uint8_t small[256];
    uint8_t *buf = token_len <= sizeof small ? small : malloc(token_len);
    if (!buf) return false;
    size_t n = 0;
    bool same = scan_string(&t, buf, &n) && n == key_len && memcmp(buf, key, n) == 0;
    if (buf != small) free(buf);
    return same;
}

courier_json_status courier_json_get_string(const uint8_t *json, size_t len, const char *key,
                                            char **out, size_t *out_len) {
    *out = NULL;
    *out_len = 0;
    scanner s = {json, json + len};

    /* First pass: the whole document must be valid. */
    if (!scan_value(&s, 0)) return COURIER_JSON_INVALID;
    skip_ws(&s);
    if (s.p != s.end) return COURIER_JSON_INVALID;

    /* Second pass: walk the top-level members; remember the last one named `key`. */
    s.p = json;
    skip_ws(&s);
    if (*s.p != '{') return COURIER_JSON_MISSING;
    s.p++;
    const uint8_t *value = NULL;
    skip_ws(&s);
    while (*s.p != '}') {
        skip_ws(&s);
        const uint8_t *name = s.p;
        scan_string(&s, NULL, NULL);
        bool match = string_equals(name, s.p, key);
        skip_ws(&s);
        s.p++; /* the colon */
        skip_ws(&s);
        if (match) value = s.p;
        scan_value(&s, 1);
        skip_ws(&s);
        if (*s.p == ',') s.p++;
    }
    if (!value) return COURIER_JSON_MISSING;
    if (*value != '"') return COURIER_JSON_NOT_STRING;

    /* Decode the value: its decoded form is at most as long as its encoded form. */
    scanner v = {value, json + len};
    uint8_t *buf = malloc((size_t)(s.end - value) + 1);
    if (!buf) return COURIER_JSON_NO_MEMORY;
    size_t n = 0;
    scan_string(&v, buf, &n);
    buf[n] = '\0';
    *out = (char *)buf;
    *out_len = n;
    return COURIER_JSON_FOUND;
}

static bool buf_reserve(courier_json_buf *b, size_t more) {
    if (b->failed) return false;
    if (b->cap - b->len >= more) return true;
    size_t cap = b->cap ? b->cap : 64;
    while (cap - b->len < more) {
        if (cap > SIZE_MAX / 2) {
            b->failed = true;
            return false;
        }
        cap *= 2;
    }
    uint8_t *p = realloc(b->ptr, cap);
    if (!p) {
        b->failed = true;
        return false;
    }
    b->ptr = p;
    b->cap = cap;
    return true;
}

void courier_json_buf_bytes(courier_json_buf *b, const void *bytes, size_t len) {
    if (!buf_reserve(b, len)) return;
    memcpy(b->ptr + b->len, bytes, len);
    b->len += len;
}

void courier_json_buf_raw(courier_json_buf *b, const char *text) {
    courier_json_buf_bytes(b, text, strlen(text));
}

void courier_json_buf_string(courier_json_buf *b, const char *s, size_t len) {
    static const char hex[] = "0123456789abcdef";
    courier_json_buf_bytes(b, "\"", 1);
    for (size_t i = 0; i < len; i++) {
        uint8_t c = (uint8_t)s[i];
        switch (c) {
        case '"': courier_json_buf_bytes(b, "\\\"", 2); break;
        case '\\': courier_json_buf_bytes(b, "\\\\", 2); break;
        case '\n': courier_json_buf_bytes(b, "\\n", 2); break;
        case '\r': courier_json_buf_bytes(b, "\\r", 2); break;
        case '\t': courier_json_buf_bytes(b, "\\t", 2); break;
        case '\b': courier_json_buf_bytes(b, "\\b", 2); break;
        case '\f': courier_json_buf_bytes(b, "\\f", 2); break;
        default:
            if (c < 0x20) {
                char esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 0xF]};
                courier_json_buf_bytes(b, esc, sizeof esc);
            } else {
                courier_json_buf_bytes(b, &s[i], 1);
            }
        }
    }
    courier_json_buf_bytes(b, "\"", 1);
}

void courier_json_buf_free(courier_json_buf *b) {
    free(b->ptr);
    b->ptr = NULL;
    b->len = 0;
    b->cap = 0;
    b->failed = false;
}
