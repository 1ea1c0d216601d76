/* The service registry (services/registry.txt), generated into a table at
 * build time: every service's name and local default ports, and where to find
 * it (<NAME>_ADDR, e.g. MEMBER_ADDR, or 127.0.0.1:<its gRPC port>). */
#ifndef SB_REGISTRY_H
#define SB_REGISTRY_H
#include <stddef.h>

typedef struct sb_registry_entry {
    const char *name; /* "member" */
    int grpc_port;    /* local default gRPC port */
    int admin_port;   /* local default admin HTTP port */
} sb_registry_entry_t;

extern const sb_registry_entry_t sb_registry[];
extern const size_t sb_registry_n;

/* The entry of service `name`; NULL when there is none. */
const sb_registry_entry_t *sb_registry_find(const char *name);
/* The gRPC target of service `name`: $<NAME>_ADDR, else 127.0.0.1:<port>.
 * Static storage per service (valid for the process); NULL for an unknown name. */
const char *sb_registry_addr(const char *name);

#endif
