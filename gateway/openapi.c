/* /openapi.json: an OpenAPI 3.0 document generated from the API table (the
 * .proto options, sb/api.h) and the protobuf-c descriptors of each binding's
 * request and response. Paths show variables by their JSON names
 * (/members/{userId}), as clients write them. */
#include <stdio.h>
#include <string.h>

#include "gateway.h"
#include "sb/api.h"
#include "sb/json.h"

#define MAX_SCHEMAS 256
#define MAX_BINDINGS 256

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
    case PROTOBUF_C_TYPE_FIXED32:
        sb_buf_adds(o, "{\"type\":\"integer\",\"format\":\"int64\",\"minimum\":0}");
        break;
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
    case PROTOBUF_C_TYPE_MESSAGE:
        ref(o, ((const ProtobufCMessageDescriptor *)f->descriptor)->name);
        break;
    }
}

/* The variable "{user_id}" starting at p: its JSON name into json (n bytes);
 * returns the character after the '}', NULL when p starts no variable. */
static const char *path_var(const char *p, char *json, size_t n)
{
    const char *e = *p == '{' ? strchr(p, '}') : NULL;
    if (!e)
        return NULL;
    char field[128];
    size_t len = (size_t)(e - p - 1) < sizeof field ? (size_t)(e - p - 1) : sizeof field - 1;
    memcpy(field, p + 1, len);
    field[len] = '\0';
    sb_json_name(field, json, n);
    return e + 1;
}

void gw_client_path(const char *tmpl, sb_buf_t *out)
{
    for (const char *p = tmpl; *p;) {
        char json[128];
        const char *next = path_var(p, json, sizeof json);
        if (next) {
            sb_buf_addf(out, "{%s}", json);
            p = next;
        } else {
            sb_buf_addch(out, *p++);
        }
    }
}

static bool is_path_var(const sb_api_http_t *h, const char *proto_name)
{
    char needle[160];
    snprintf(needle, sizeof needle, "{%s}", proto_name);
    return strstr(h->path, needle) != NULL;
}

static void operation(sb_buf_t *o, const sb_api_method_t *r, const sb_api_http_t *h, struct schemas *s)
{
    const ProtobufCMethodDescriptor *md = r->rpc;
    bool body = h->body[0] != '\0';
    char lower[8];
    size_t i = 0;
    for (; h->verb[i] && i < sizeof lower - 1; i++)
        lower[i] = (char)(h->verb[i] | 0x20);
    lower[i] = '\0';
    sb_buf_addf(o, "\"%s\":{\"summary\":", lower);
    sb_buf_add_json_str(o, r->summary, strlen(r->summary));
    /* operationId: the backend keeps ReplayEvents of two services apart; a
     * dispatched binding (POST /events/{serviceId}) is one operation of all */
    if (r->dispatch_var)
        sb_buf_addf(o, ",\"operationId\":\"%s\",\"tags\":[\"%s\"]", md->name,
                    r->backend ? "events" : "admin");
    else
        sb_buf_addf(o, ",\"operationId\":\"%s_%s\",\"tags\":[\"%s\"]", r->backend, md->name, r->backend);
    if (!r->access.public_)
        sb_buf_adds(o, ",\"security\":[{\"bearer\":[]}]");
    /* a cached read (etag.c): ETag, Cache-Control, If-None-Match -> 304 */
    if (r->cache.max_age_ms)
        sb_buf_addf(o, ",\"x-sb-cache\":{\"maxAgeMs\":%u,\"public\":%s}", r->cache.max_age_ms,
                    r->cache.public_ ? "true" : "false");
    /* parameters: path variables, scalar fields as query parameters on GET, bound headers */
    sb_buf_adds(o, ",\"parameters\":[");
    bool first = true;
    char json[128];
    for (const char *p = strchr(h->path, '{'); p && path_var(p, json, sizeof json);
         p = strchr(p + 1, '{')) {
        sb_buf_addf(
            o, "%s{\"name\":\"%s\",\"in\":\"path\",\"required\":true,\"schema\":{\"type\":\"string\"}}",
            first ? "" : ",", json);
        first = false;
    }
    if (!body && !strcmp(h->verb, "GET")) {
        for (unsigned f = 0; f < md->input->n_fields; f++) {
            const ProtobufCFieldDescriptor *fd = &md->input->fields[f];
            char jn[128];
            sb_json_name(fd->name, jn, sizeof jn);
            if (fd->type == PROTOBUF_C_TYPE_MESSAGE || fd->label == PROTOBUF_C_LABEL_REPEATED ||
                is_path_var(h, fd->name))
                continue;
            sb_buf_addf(o, "%s{\"name\":\"%s\",\"in\":\"query\",\"required\":false,\"schema\":",
                        first ? "" : ",", jn);
            field_schema(o, fd);
            sb_buf_addch(o, '}');
            first = false;
        }
    }
    for (size_t k = 0; k < r->n_headers; k++) {
        sb_buf_addf(
            o,
            "%s{\"name\":\"%s\",\"in\":\"header\",\"required\":false,\"schema\":{\"type\":\"string\"}}",
            first ? "" : ",", r->headers[k].header);
        first = false;
    }
    sb_buf_addch(o, ']');
    if (body && r->raw_body_field) {
        /* the exact bytes, not decoded (a signed webhook) */
        sb_buf_adds(o, ",\"requestBody\":{\"required\":true,\"content\":{\"application/json\":"
                       "{\"schema\":{\"type\":\"object\"}}}}");
    } else if (body) {
        want_msg(s, md->input);
        sb_buf_adds(
            o, ",\"requestBody\":{\"required\":true,\"content\":{\"application/json\":{\"schema\":");
        ref(o, md->input->name);
        sb_buf_adds(o, "}}}");
    }
    sb_buf_addf(o, ",\"responses\":{\"%d\":{\"description\":\"success\"", r->ok_status);
    want_msg(s, md->output);
    sb_buf_adds(o, ",\"content\":{\"application/json\":{\"schema\":");
    ref(o, md->output->name);
    sb_buf_adds(o, "}}}");
    if (r->cache.max_age_ms)
        sb_buf_adds(o, ",\"304\":{\"description\":\"not modified (If-None-Match names the ETag)\"}");
    sb_buf_adds(o,
                ",\"default\":{\"description\":\"error\",\"content\":{\"application/json\":{\"schema\":"
                "{\"$ref\":\"#/components/schemas/Error\"}}}}}}");
}

/* Every REST binding of the table in order, as (row, binding). */
struct binding {
    const sb_api_method_t *r;
    const sb_api_http_t *h;
};

static size_t bindings(struct binding *out, size_t cap)
{
    size_t n = 0;
    for (size_t i = 0; i < sb_api_n_methods; i++)
        for (size_t h = 0; h < sb_api_methods[i].n_http && n < cap; h++)
            out[n++] = (struct binding){&sb_api_methods[i], &sb_api_methods[i].http[h]};
    return n;
}

void gw_openapi(sb_buf_t *o)
{
    struct schemas local = {0}; /* ~4 KiB on the caller's stack */
    struct schemas *sp = &local;
    sb_buf_adds(
        o,
        "{\"openapi\":\"3.0.3\",\"info\":{\"title\":\"showbook REST API\",\"version\":\"1.0.0\","
        "\"description\":\"Show reservation and payment platform. JSON follows the proto3 JSON mapping: "
        "lowerCamelCase fields, int64 as strings, enums by name, timestamps as RFC 3339.\"},"
        "\"servers\":[{\"url\":\"http://127.0.0.1:8080\"}],\"paths\":{");
    struct binding all[MAX_BINDINGS];
    size_t n = bindings(all, MAX_BINDINGS);
    bool first_path = true;
    for (size_t i = 0; i < n; i++) {
        bool seen = false;
        for (size_t j = 0; j < i && !seen; j++)
            seen = !strcmp(all[j].h->path, all[i].h->path);
        if (seen)
            continue; /* emitted with the first binding of the same path */
        if (!first_path)
            sb_buf_addch(o, ',');
        first_path = false;
        sb_buf_t path = SB_BUF_INIT;
        gw_client_path(all[i].h->path, &path);
        sb_buf_add_json_str(o, path.buf, path.len);
        sb_buf_release(&path);
        sb_buf_adds(o, ":{");
        bool first_op = true;
        for (size_t j = i; j < n; j++) {
            if (strcmp(all[j].h->path, all[i].h->path) != 0)
                continue;
            bool dup = false; /* one operation per verb: dispatched rows share one */
            for (size_t k = i; k < j && !dup; k++)
                dup = !strcmp(all[k].h->path, all[j].h->path) && !strcmp(all[k].h->verb, all[j].h->verb);
            if (dup)
                continue;
            if (!first_op)
                sb_buf_addch(o, ',');
            first_op = false;
            operation(o, all[j].r, all[j].h, sp);
        }
        sb_buf_addch(o, '}');
    }
    sb_buf_adds(
        o, "},\"components\":{\"securitySchemes\":{\"bearer\":{\"type\":\"http\",\"scheme\":\"bearer\","
           "\"bearerFormat\":\"JWT\"}},\"schemas\":{\"Error\":{\"type\":\"object\",\"properties\":{"
           "\"error\":"
           "{\"type\":\"object\",\"properties\":{\"code\":{\"type\":\"string\"},\"message\":{\"type\":"
           "\"string\"}}}}}");
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
