#include "sb/alloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

_Noreturn void sb_oom(size_t n)
{
    /* Not through sb_log: logging may itself need memory. */
    fprintf(stderr, "{\"level\":\"error\",\"msg\":\"out of memory allocating %zu bytes, aborting\"}\n",
            n);
    abort();
}

void *sb_malloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        sb_oom(n);
    return p;
}

void *sb_calloc(size_t n, size_t sz)
{
    void *p = calloc(n ? n : 1, sz ? sz : 1);
    if (!p)
        sb_oom(n * sz);
    return p;
}

void *sb_realloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q)
        sb_oom(n);
    return q;
}

char *sb_strndup(const char *s, size_t n)
{
    char *p = sb_malloc(n + 1);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

char *sb_strdup(const char *s)
{
    return sb_strndup(s, strlen(s));
}
