/* Allocation wrappers: failure aborts with a log line (every input size is
 * capped before it is read, so running out of memory is not a request error).
 * There is no fault-injection build yet (CONVENTIONS "fail allocation #N"):
 * with abort-on-failure it needs *_try variants first. */
#ifndef SB_ALLOC_H
#define SB_ALLOC_H
#include <stddef.h>

void *sb_malloc(size_t n);            /* caller frees with free() */
void *sb_calloc(size_t n, size_t sz); /* caller frees with free() */
void *sb_realloc(void *p, size_t n);  /* caller frees with free() */
char *sb_strdup(const char *s);       /* caller frees with free() */
char *sb_strndup(const char *s, size_t n);
/* Logs "out of memory allocating n bytes" and aborts. */
_Noreturn void sb_oom(size_t n);

#endif
