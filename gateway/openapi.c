/* /openapi.json: an OpenAPI 3.0 document generated from the route table and
 * the protobuf-c descriptors of each route's request and response. */
#include <string.h>

#include "gateway.h"
#include "sb/json.h"

#define MAX_SCHEMAS 256

struct schemas {
    const ProtobufCMessageDescriptor *msgs[MAX_SCHEMAS];
    size_t n_msgs;
    const ProtobufCEnumDescriptor *enums[MAX_SCHEMAS];
    size_t n_enums;
};

static void want_msg(struct schemas *s, const ProtobufCMessageDescriptor *d)
{
    for (size_t i = 0; i < s->n_msgs; i++)
        if (s->msgs[i] == d)
            return;
    if (s->n_msgs == MAX_SCHEMAS)
        return;
    s->msgs[s->n_msgs++] = d;
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        if (f->type == PROTOBUF_C_TYPE_MESSAGE)
            want_msg(s, f->descriptor);
        else if (f->type == PROTOBUF_C_TYPE_ENUM) {
            bool seen = false;
            for (size_t j = 0; j < s->n_enums; j++)
                seen = seen || s->enums[j] == f->descriptor;
            if (!seen && s->n_enums < MAX_SCHEMAS)
                s->enums[s->n_enums++] = f->descriptor;
        }
    }
}

static void ref(sb_buf_t *o, const char *full_name)
{
    sb_buf_addf(o, "{\"$ref\":\"#/components/schemas/%s\"}", full_name);
}

static void field_schema(sb_buf_t *o, const ProtobufCFieldDescriptor *f)
{
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32: sb_buf_adds(o, "{\"type\":\"integer\",\"format\":\"int32\"}"); break;
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32: sb_buf_adds(o, "{\"type\":\"integer\",\"format\":\"int64\",\"minimum\":0}"); break;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64: sb_buf_adds(o, "{\"type\":\"string\",\"format\":\"int64\"}"); break;
    case PROTOBUF_C_TYPE_FLOAT: sb_buf_adds(o, "{\"type\":\"number\",\"format\":\"float\"}"); break;
    case PROTOBUF_C_TYPE_DOUBLE: sb_buf_adds(o, "{\"type\":\"number\",\"format\":\"double\"}"); break;
    case PROTOBUF_C_TYPE_BOOL: sb_buf_adds(o, "{\"type\":\"boolean\"}"); break;
    case PROTOBUF_C_TYPE_STRING: sb_buf_adds(o, "{\"type\":\"string\"}"); break;
    case PROTOBUF_C_TYPE_BYTES: sb_buf_adds(o, "{\"type\":\"string\",\"format\":\"byte\"}"); break;
    case PROTOBUF_C_TYPE_ENUM: ref(o, ((const ProtobufCEnumDescriptor *)f->descriptor)->name); break;
    case PROTOBUF_C_TYPE_MESSAGE: ref(o, ((const ProtobufCMessageDescriptor *)f->descriptor)->name); break;
    }
}

static void path_template(sb_buf_t *o, const char *pattern)
{
    sb_buf_add_json_str(o, pattern, strlen(pattern));
}

static bool is_path_var(const gw_route_t *r, const char *json_name)
{
    char needle[160];
    snprintf(needle, sizeof needle, "{%s}", json_name);
    return strstr(r->pattern, needle) != NULL;
}

static void operation(sb_buf_t *o, const gw_route_t *r, struct schemas *s)
{
    const ProtobufCMethodDescriptor *md = r->svc ? protobuf_c_service_descriptor_get_method_by_name(r->svc, r->rpc) : NULL;
    char lower[8];
    size_t i = 0;
    for (; r->method[i] && i < sizeof lower - 1; i++)
        lower[i] = (char)(r->method[i] | 0x20);
    lower[i] = '\0';
    sb_buf_addf(o, "\"%s\":{\"summary\":", lower);
    sb_buf_add_json_str(o, r->summary, strlen(r->summary));
    sb_buf_addf(o, ",\"operationId\":\"%s_%s\",\"tags\":[\"%s\"]", lower, md ? md->name : "unbuilt",
                gw_backend_names[r->backend]);
    if (r->roles != GW_PUBLIC)
        sb_buf_adds(o, ",\"security\":[{\"bearer\":[]}]");
    /* parameters: path variables, then scalar fields as query parameters on GET */
    sb_buf_adds(o, ",\"parameters\":[");
    bool first = true;
    for (const char *p = strchr(r->pattern, '{'); p; p = strchr(p + 1, '{')) {
        const char *e = strchr(p, '}');
        sb_buf_addf(o, "%s{\"name\":\"%.*s\",\"in\":\"path\",\"required\":true,\"schema\":{\"type\":\"string\"}}",
                    first ? "" : ",", (int)(e - p - 1), p + 1);
        first = false;
    }
    if (md && !r->body && !strcmp(r->method, "GET")) {
        for (unsigned f = 0; f < md->input->n_fields; f++) {
            const ProtobufCFieldDescriptor *fd = &md->input->fields[f];
            char jn[128];
            sb_json_name(fd->name, jn, sizeof jn);
            if (fd->type == PROTOBUF_C_TYPE_MESSAGE || fd->label == PROTOBUF_C_LABEL_REPEATED || is_path_var(r, jn))
                continue;
            sb_buf_addf(o, "%s{\"name\":\"%s\",\"in\":\"query\",\"required\":false,\"schema\":", first ? "" : ",", jn);
            field_schema(o, fd);
            sb_buf_addch(o, '}');
            first = false;
        }
    }
    if (!strcmp(r->method, "POST") && (!strcmp(r->pattern, "/reservations") || !strcmp(r->pattern, "/payments"))) {
        sb_buf_addf(o, "%s{\"name\":\"Idempotency-Key\",\"in\":\"header\",\"required\":false,\"schema\":{\"type\":\"string\"}}",
                    first ? "" : ",");
    }
    sb_buf_addch(o, ']');
    if (md && r->body) {
        want_msg(s, md->input);
        sb_buf_adds(o, ",\"requestBody\":{\"required\":true,\"content\":{\"application/json\":{\"schema\":");
        ref(o, md->input->name);
        sb_buf_adds(o, "}}}");
    }
    sb_buf_addf(o, ",\"responses\":{\"%d\":{\"description\":\"success\"", r->ok_status);
    if (md) {
        want_msg(s, md->output);
        sb_buf_adds(o, ",\"content\":{\"application/json\":{\"schema\":");
        ref(o, md->output->name);
        sb_buf_adds(o, "}}");
    }
    sb_buf_adds(o, "},\"default\":{\"description\":\"error\",\"content\":{\"application/json\":{\"schema\":"
                   "{\"$ref\":\"#/components/schemas/Error\"}}}}}}");
}

void gw_openapi(sb_buf_t *o)
{
    struct schemas local = {0}; /* ~4 KiB on the caller's stack */
    struct schemas *sp = &local;
    sb_buf_adds(o, "{\"openapi\":\"3.0.3\",\"info\":{\"title\":\"showbook REST API\",\"version\":\"1.0.0\","
                   "\"description\":\"Show reservation and payment platform. JSON follows the proto3 JSON mapping: "
                   "lowerCamelCase fields, int64 as strings, enums by name, timestamps as RFC 3339.\"},"
                   "\"servers\":[{\"url\":\"http://127.0.0.1:8080\"}],\"paths\":{");
    bool first_path = true;
    for (size_t i = 0; i < gw_n_routes; i++) {
        const gw_route_t *r = &gw_routes[i];
        bool seen = false;
        for (size_t j = 0; j < i; j++)
            seen = seen || !strcmp(gw_routes[j].pattern, r->pattern);
        if (seen)
            continue; /* emitted with the first route of the same path */
        if (!first_path)
            sb_buf_addch(o, ',');
        first_path = false;
        path_template(o, r->pattern);
        sb_buf_addch(o, ':');
        sb_buf_addch(o, '{');
        bool first_op = true;
        for (size_t j = i; j < gw_n_routes; j++) {
            if (strcmp(gw_routes[j].pattern, r->pattern) != 0)
                continue;
            if (!first_op)
                sb_buf_addch(o, ',');
            first_op = false;
            operation(o, &gw_routes[j], sp);
        }
        sb_buf_addch(o, '}');
    }
    sb_buf_adds(o, "},\"components\":{\"securitySchemes\":{\"bearer\":{\"type\":\"http\",\"scheme\":\"bearer\","
                   "\"bearerFormat\":\"JWT\"}},\"schemas\":{\"Error\":{\"type\":\"object\",\"properties\":{\"error\":"
                   "{\"type\":\"object\",\"properties\":{\"code\":{\"type\":\"string\"},\"message\":{\"type\":\"string\"}}}}}");
    for (size_t i = 0; i < sp->n_msgs; i++) {
        const ProtobufCMessageDescriptor *d = sp->msgs[i];
        sb_buf_addf(o, ",\"%s\":{\"type\":\"object\",\"properties\":{", d->name);
        for (unsigned f = 0; f < d->n_fields; f++) {
            const ProtobufCFieldDescriptor *fd = &d->fields[f];
            char jn[128];
            sb_json_name(fd->name, jn, sizeof jn);
            sb_buf_addf(o, "%s\"%s\":", f ? "," : "", jn);
            if (fd->label == PROTOBUF_C_LABEL_REPEATED) {
                sb_buf_adds(o, "{\"type\":\"array\",\"items\":");
                field_schema(o, fd);
                sb_buf_addch(o, '}');
            } else {
                field_schema(o, fd);
            }
        }
        sb_buf_adds(o, "},\"additionalProperties\":false}");
    }
    for (size_t i = 0; i < sp->n_enums; i++) {
        const ProtobufCEnumDescriptor *e = sp->enums[i];
        sb_buf_addf(o, ",\"%s\":{\"type\":\"string\",\"enum\":[", e->name);
        for (unsigned v = 0; v < e->n_values; v++)
            sb_buf_addf(o, "%s\"%s\"", v ? "," : "", e->values[v].name);
        sb_buf_adds(o, "]}");
    }
    sb_buf_adds(o, "}}}");
}
