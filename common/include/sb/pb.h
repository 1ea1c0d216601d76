/* Protobuf-c messages worked on through their descriptors, by field name:
 * one piece of code instead of a hand-written assignment per field wherever
 * the names already say what goes where (a query row into an API message,
 * sb_db_row_to_pb in sb/db.h; an API message into an event payload). The
 * JSON transcoder (sb/json.h) is the strict counterpart for untrusted input.
 *
 * Everything here borrows: strings, and sub-messages of the same type, are
 * shared with the source, which must outlive the result (both normally live
 * in the unit of work's arena). */
#ifndef SB_PB_H
#define SB_PB_H
#include <stdbool.h>
#include <stddef.h>
#include <protobuf-c/protobuf-c.h>

#include "sb/arena.h"

/* A new message of type d in a, initialised (defaults set). */
ProtobufCMessage *sb_pb_new(sb_arena_t *a, const ProtobufCMessageDescriptor *d);

/* For walks over the fields (the JSON transcoder's too): the size of one
 * value of type t in a message or a repeated field's array; whether m has f
 * set (a oneof member that is the case, a proto3 `optional` that is present,
 * a sub-message that is not NULL; any other field always); f marked present
 * after its value was written (a oneof's case, an `optional` scalar's has_). */
size_t sb_pb_value_size(ProtobufCType t);
bool sb_pb_has(const ProtobufCMessage *m, const ProtobufCFieldDescriptor *f);
void sb_pb_mark_present(ProtobufCMessage *m, const ProtobufCFieldDescriptor *f);

/* Sets the singular field f of m from its text form: a string field to text
 * itself (borrowed), an integer from decimal, a bool from t/true/1 or
 * f/false/0, a float from strtod, an enum from its .proto name ("APPROVED");
 * a proto3 `optional` or oneof member is marked present. false, with m
 * unchanged, when the text does not parse as f's type or f is repeated, a
 * message or bytes. */
bool sb_pb_set_text(ProtobufCMessage *m, const ProtobufCFieldDescriptor *f, const char *text);

/* Sets the repeated field `name` of m to items (n elements, borrowed).
 * false when m has no repeated field of that name. */
bool sb_pb_set_repeated(ProtobufCMessage *m, const char *name, void *items, size_t n);

/* Copies into dst every field of src whose name dst has with the same type
 * and label (an enum of another type by value name; a sub-message of another
 * type converted the same way into a new message in a, repeated ones too).
 * Fields src lacks keep their values in dst; unset optional and oneof
 * members are not copied. */
void sb_pb_copy_fields(sb_arena_t *a, ProtobufCMessage *dst, const ProtobufCMessage *src);

#endif
