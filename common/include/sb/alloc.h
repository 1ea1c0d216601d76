/* Allocation wrappers: failure aborts with a log line (every input size is
 * capped before it is read, so running out of memory is not a request error).
 * Tests can make allocation number N fail (sb_alloc_fail_at) to check that
 * callers that use the *_try variants unwind cleanly. */
#ifndef SB_ALLOC_H
#define SB_ALLOC_H
#include <stddef.h>

void *sb_malloc(size_t n);             /* caller frees with free() */
void *sb_calloc(size_t n, size_t sz);  /* caller frees with free() */
void *sb_realloc(void *p, size_t n);   /* caller frees with free() */
char *sb_strdup(const char *s);        /* caller frees with free() */
char *sb_strndup(const char *s, size_t n);

#endif
