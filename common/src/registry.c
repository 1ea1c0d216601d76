/* Lookups over the generated registry table (sb/registry.h). */
#include "sb/registry.h"

#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sb/config.h"

#define MAX_SERVICES 32

const sb_registry_entry_t *sb_registry_find(const char *name)
{
    for (size_t i = 0; name && i < sb_registry_n; i++)
        if (!strcmp(sb_registry[i].name, name))
            return &sb_registry[i];
    return NULL;
}

static char addrs[MAX_SERVICES][256];
static pthread_once_t addrs_once = PTHREAD_ONCE_INIT;

static void load_addrs(void)
{
    for (size_t i = 0; i < sb_registry_n && i < MAX_SERVICES; i++) {
        char var[64], def[32];
        size_t k = 0;
        for (const char *p = sb_registry[i].name; *p && k + 6 < sizeof var; p++)
            var[k++] = (char)toupper((unsigned char)*p);
        memcpy(var + k, "_ADDR", 6);
        snprintf(def, sizeof def, "127.0.0.1:%d", sb_registry[i].grpc_port);
        snprintf(addrs[i], sizeof addrs[i], "%s", sb_cfg_str(var, def));
    }
}

const char *sb_registry_addr(const char *name)
{
    const sb_registry_entry_t *e = sb_registry_find(name);
    if (!e || (size_t)(e - sb_registry) >= MAX_SERVICES)
        return NULL;
    pthread_once(&addrs_once, load_addrs);
    return addrs[e - sb_registry];
}
