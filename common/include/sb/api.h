/* The API table: every RPC of every service with its REST mapping and access
 * policy, generated at build time from the .proto files (google.api.http
 * annotations and the (sb.api.method) option, see proto/sb/api/options.proto)
 * by tools/gen_api.py. protobuf-c drops options at run time, so this table is
 * the only place the gateway, the services' runtime, the auth service's
 * POST /auth and /openapi.json read them from. Never edited by hand. */
#ifndef SB_API_H
#define SB_API_H
#include <stdbool.h>
#include <stddef.h>
#include <protobuf-c/protobuf-c.h>

#include "sb/arena.h"
#include "sb/buf.h"
#include "sb/status.h"

/* Role bits of a policy (Sb__Common__Role values as bits). */
enum {
    SB_ROLE_BIT_USER = 1u << 0,
    SB_ROLE_BIT_PLANNER = 1u << 1,
    SB_ROLE_BIT_ADMIN = 1u << 2,
    SB_ROLE_BITS_ALL = SB_ROLE_BIT_USER | SB_ROLE_BIT_PLANNER | SB_ROLE_BIT_ADMIN,
};

/* The role bit of a role name as carried in a token and in x-user-role
 * ("USER", "PLANNER", "ADMIN" exactly); 0 for NULL or anything else, so an
 * unknown role is admitted by no role clause. */
unsigned sb_api_role_bit(const char *role);

/* Who may call an RPC. Deny by default: a method whose policy says nothing
 * admits no one (the unit test refuses such a table).
 *   public:      anyone, no identity needed
 *   roles:       signed-in callers whose role bit is set ("signed in" = all)
 *   owner_field: callers not admitted by `roles` are admitted when they are
 *                signed in and their user id equals this request field
 *                ("user_id"): "self, admin" is roles=ADMIN, owner_field=user_id.
 *                The field holds a user id, a UUID: compared ignoring case,
 *                and a value that is no UUID is INVALID_ARGUMENT
 *   services:    calling services (by their certificate name) admitted
 *                whatever the end user; NULL-terminated, NULL when none
 *   refusal:     what a caller refused by the policy reads; NULL: a message
 *                made from the policy */
typedef struct sb_api_access {
    bool public_;
    unsigned roles;
    const char *owner_field;
    const char *const *services;
    const char *refusal;
} sb_api_access_t;

/* One HTTP binding: verb, path template ("/members/{user_id}", proto field
 * names; {a.b} nested), body ("*", a field name, or "" for none). */
typedef struct sb_api_http {
    const char *verb;
    const char *path;
    const char *body;
} sb_api_http_t;

/* An HTTP header that fills a request field ("Idempotency-Key" -> idempotency_key). */
typedef struct sb_api_header {
    const char *header;
    const char *field;
} sb_api_header_t;

/* A read served from memory ((sb.api.method).cache, proto/sb/api/options.proto;
 * the runtime's side is sb/rpc_cache.h, the gateway's ETag and Cache-Control
 * gateway/etag.c). max_age_ms 0: not cached.
 *   public_:             the answer is the same for every caller: one entry per
 *                        request; else entries are the verified caller's own
 *   invalidated_by:      event types, or prefixes ending in '.', whose handling
 *                        clears the method's entries (NULL-terminated)
 *   invalidated_by_rpcs: names of methods of the same service whose calls clear
 *                        them when they finish (NULL-terminated)
 *   key_field:           the request field an entry is about ("schedule_id"): a
 *                        clearing call whose request has it clears that value's
 *                        entries only; NULL: always all
 *   key_is_aggregate:    the events' aggregate id is key_field's value */
typedef struct sb_api_cache {
    unsigned max_age_ms;
    bool public_;
    const char *const *invalidated_by;
    const char *const *invalidated_by_rpcs;
    const char *key_field;
    bool key_is_aggregate;
} sb_api_cache_t;

typedef struct sb_api_method {
    const ProtobufCServiceDescriptor *service; /* "sb.member.MemberService" */
    const ProtobufCMethodDescriptor *rpc;      /* name, input, output (a copy of the
                                                  service's entry: compare by name) */
    const char *backend;                       /* short service name: "member"; NULL for
                                                  the runtime's rpcs every service serves
                                                  (proto/runtime.proto): the dispatch_var
                                                  names the service */
    sb_api_access_t access;
    int ok_status;             /* HTTP status on success: 200, or 201 (created) */
    bool idempotent;           /* Idempotency-Key honoured (runtime stores answers) */
    bool rate_limited;         /* per-client rate limit (login) */
    const char *dispatch_var;  /* non-NULL: the path variable whose value names the
                                  backend among rows sharing this path (/events/{service_id}) */
    const char *summary;       /* one line for OpenAPI (the rpc's leading comment) */
    const sb_api_http_t *http; /* primary binding first, then additional_bindings */
    size_t n_http;             /* 0: not on the REST API */
    const sb_api_header_t *headers;
    size_t n_headers;
    const char *raw_body_field; /* non-NULL: the HTTP body is not decoded; its exact bytes
                                   fill this top-level bytes field (a provider webhook,
                                   whose signature covers the bytes) */
    sb_api_cache_t cache;
} sb_api_method_t;

extern const sb_api_method_t sb_api_methods[];
extern const size_t sb_api_n_methods;
/* Every service compiled into sb_proto, grpc.health.v1.Health included
 * (which has no rows: the runtime's own, open to all). */
extern const ProtobufCServiceDescriptor *const sb_api_services[];
extern const size_t sb_api_n_services;

/* The row of "/pkg.Service/Method" or of (service full name, method name);
 * NULL when none. */
const sb_api_method_t *sb_api_find_path(const char *grpc_path);
const sb_api_method_t *sb_api_find(const char *service, const char *method);

/* The access decision for one call, from verified identity only:
 *   user_id / role: the end user ("" when anonymous; role "USER", "PLANNER",
 *                   "ADMIN" exactly, anything else is no role)
 *   service:        the calling service's name ("" when not a service)
 *   req:            the unpacked request (for owner_field)
 * SB_OK when m's policy admits the caller; UNAUTHENTICATED when the method
 * needs a signed-in caller and there is none; INVALID_ARGUMENT when the
 * decision rests on owner_field and its value is no UUID; PERMISSION_DENIED
 * otherwise (also for m == NULL: deny by default). why receives a message fit
 * for the client ("sign in first", "this action needs the ADMIN role", ...).
 * req may be NULL only when m's policy has no owner_field. */
sb_status_t sb_api_authorize(const sb_api_method_t *m, const char *user_id, const char *role,
                             const char *service, const ProtobufCMessage *req, sb_buf_t *why);

/* REST routing over the table (used by the gateway and by POST /auth).
 * Matches verb + path (no query) against every binding; path variables are
 * returned by proto field name. dispatch_var rows are chosen by the value of
 * that variable (the backend's short name); a row without a backend (every
 * service's) matches any value, and the caller sends it to the service the
 * value names (sb_api_match_backend). false when nothing matches;
 * *path_known tells 405 (the path exists with another verb) from 404. */
#define SB_API_MAX_VARS 4
typedef struct sb_api_match {
    const sb_api_method_t *method;
    const sb_api_http_t *http;
    size_t n_vars;
    struct {
        char field[48]; /* proto field path, "user_id" */
        char value[128];
    } vars[SB_API_MAX_VARS];
    bool path_known;
} sb_api_match_t;
bool sb_api_match(const char *verb, const char *path, sb_api_match_t *m);
/* The service a match goes to: the row's backend, or for a row every service
 * serves the value of its dispatch_var. Borrowed from m. */
const char *sb_api_match_backend(const sb_api_match_t *m);

/* A request message of m's RPC, allocated in a, with its string fields set
 * from m's path variables (others stay default): what sb_api_authorize needs
 * to decide on an owner_field before the request is otherwise built (the
 * gateway's early check, POST /auth). */
ProtobufCMessage *sb_api_match_request(const sb_api_match_t *m, sb_arena_t *a);

#endif
