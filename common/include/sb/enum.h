/* Enum values <-> their names in the .proto ("APPROVED"), through the enum
 * descriptors protobuf-c generates: no hand-written converter per enum. The
 * names are the ones the JSON mapping uses, so a value stored as text in a
 * database reads back with the same table the gateway prints it with. */
#ifndef SB_ENUM_H
#define SB_ENUM_H
#include <protobuf-c/protobuf-c.h>

/* The name of value in d (static, from the generated descriptor); NULL when
 * value is not one of d's values. */
const char *sb_enum_name(const ProtobufCEnumDescriptor *d, int value);
/* The value d names exactly (case-sensitively) `name`; fallback for NULL or
 * any other string. */
int sb_enum_value(const ProtobufCEnumDescriptor *d, const char *name, int fallback);

#endif
