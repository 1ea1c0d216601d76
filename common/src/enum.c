/* Enum names through protobuf-c's descriptors; see sb/enum.h. */
#include "sb/enum.h"

const char *sb_enum_name(const ProtobufCEnumDescriptor *d, int value)
{
    const ProtobufCEnumValue *v = protobuf_c_enum_descriptor_get_value(d, value);
    return v ? v->name : NULL;
}

int sb_enum_value(const ProtobufCEnumDescriptor *d, const char *name, int fallback)
{
    const ProtobufCEnumValue *v = name ? protobuf_c_enum_descriptor_get_value_by_name(d, name) : NULL;
    return v ? v->value : fallback;
}
