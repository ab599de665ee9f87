/*
 * courier_json: the little JSON a C plugin needs, without a JSON library.
 *
 * Courier hands a plugin its payload as JSON bytes and takes follow-up payloads as JSON
 * bytes. These helpers cover the common case of a handler that reads a few string fields of
 * a top-level object and writes a flat object of strings:
 *
 *   - courier_json_get_string() validates the whole document (RFC 8259 grammar, nesting up to
 *     COURIER_JSON_MAX_DEPTH) and extracts one top-level string member, decoding every escape
 *     (\" \\ \/ \b \f \n \r \t and \uXXXX, surrogate pairs included) to UTF-8;
 *   - courier_json_buf_* build a document, escaping strings as JSON requires.
 *
 * It is not a general JSON library: numbers are checked, not converted; only top-level
 * members are looked up; if a key appears twice the last one wins (like most parsers). For
 * anything more, vendor a real parser that compiles to wasm32-wasi.
 */
#ifndef COURIER_JSON_H
#define COURIER_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define COURIER_JSON_MAX_DEPTH 64

typedef enum {
    /* The member exists and is a string: *out holds it (malloc'ed, NUL-terminated). */
    COURIER_JSON_FOUND = 0,
    /* The document is valid, but it is not an object or has no member with that key. */
    COURIER_JSON_MISSING,
    /* The member exists but is not a string. */
    COURIER_JSON_NOT_STRING,
    /* The bytes are not one valid JSON document (or nest deeper than the limit). */
    COURIER_JSON_INVALID,
    /* malloc failed. */
    COURIER_JSON_NO_MEMORY,
} courier_json_status;

/*
 * Looks up the top-level member `key` of the JSON document json[0..len).
 *
 * On COURIER_JSON_FOUND, *out is a malloc'ed NUL-terminated UTF-8 copy of the decoded string
 * (free it) and *out_len its length in bytes (the string may itself contain NUL bytes, from
 * \u0000). On any other status *out is NULL.
 */
courier_json_status courier_json_get_string(const uint8_t *json, size_t len, const char *key,
                                            char **out, size_t *out_len);

/* A growable byte buffer for writing JSON. Start from `courier_json_buf b = {0};`. */
typedef struct {
    uint8_t *ptr;
    size_t len;
    size_t cap;
    bool failed; /* set when an allocation failed; later appends do nothing */
} courier_json_buf;

/* Appends NUL-terminated text as it is (for punctuation such as `{`, `,`, `:`). */
void courier_json_buf_raw(courier_json_buf *b, const char *text);
/* Appends bytes[0..len) as they are. */
void courier_json_buf_bytes(courier_json_buf *b, const void *bytes, size_t len);
/* Appends s[0..len) as a quoted JSON string, escaping `"`, `\` and control characters. */
void courier_json_buf_string(courier_json_buf *b, const char *s, size_t len);
/* Frees the buffer's memory and resets it. */
void courier_json_buf_free(courier_json_buf *b);

#endif
