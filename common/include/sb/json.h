/* JSON <-> protobuf transcoding driven by protobuf-c descriptors, for the
 * gateway's request and response bodies and the outbound HTTP client's
 * (sb/http.h). It follows the proto3 JSON mapping: lowerCamelCase names (the
 * proto name is accepted on input too), 64-bit integers as strings (numbers
 * accepted on input), enums by name, bytes as base64, repeated fields as
 * arrays, nested messages as objects. Output prints every field, including
 * defaults (clients see "seatIds": [] rather than nothing), except proto3
 * `optional` fields that are unset. Unknown fields, wrong types, out-of-range
 * numbers and unknown enum names are INVALID_ARGUMENT with a message naming
 * the field. */
#ifndef SB_JSON_H
#define SB_JSON_H
#include <jansson.h>
#include <protobuf-c/protobuf-c.h>

#include "sb/arena.h"
#include "sb/buf.h"
#include "sb/status.h"

/* Maximum nesting accepted on input (messages inside messages). */
#define SB_JSON_MAX_DEPTH 16

/* Decoding options. IGNORE_UNKNOWN skips fields the message does not declare
 * and leaves an enum at its default when the name is unknown (protobuf's
 * ignore_unknown_fields): for replies from systems outside the platform, which
 * add fields and values over time and whose every field we do not declare.
 * Requests into the platform stay strict. */
#define SB_JSON_IGNORE_UNKNOWN 1u

/* "seat_ids" -> "seatIds" into out (n bytes). */
void sb_json_name(const char *proto_name, char *out, size_t n);

/* Parses body (len bytes; empty = {}) into a new message of type d allocated in
 * arena a. On failure returns INVALID_ARGUMENT with err naming the problem. */
sb_status_t sb_json_decode(const ProtobufCMessageDescriptor *d, const char *body, size_t len,
                           sb_arena_t *a, ProtobufCMessage **out, sb_buf_t *err);
/* The same with options (SB_JSON_* flags, 0 = sb_json_decode). */
sb_status_t sb_json_decode_flags(const ProtobufCMessageDescriptor *d, const char *body, size_t len,
                                 unsigned flags, sb_arena_t *a, ProtobufCMessage **out, sb_buf_t *err);
/* Fills message m from a parsed JSON object (obj borrowed; strings and
 * sub-messages allocated in a). */
sb_status_t sb_json_decode_object(ProtobufCMessage *m, json_t *obj, sb_arena_t *a, sb_buf_t *err);
/* Sets one scalar field of m (by JSON or proto name) from a text value, as
 * path variables and query parameters do. NOT_FOUND if m has no such field. */
sb_status_t sb_json_set_field(ProtobufCMessage *m, const char *name, const char *value, sb_arena_t *a,
                              sb_buf_t *err);
/* Appends m as a JSON object to out. */
void sb_json_encode(const ProtobufCMessage *m, sb_buf_t *out);

#endif
