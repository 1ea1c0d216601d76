/* Growable byte string in the spirit of git's strbuf.
 * Invariants: buf is never NULL and always NUL-terminated at len; a zeroed
 * struct is not valid, use SB_BUF_INIT or sb_buf_init. */
#ifndef SB_BUF_H
#define SB_BUF_H
#include <stdarg.h>
#include <stddef.h>

typedef struct sb_buf {
    char *buf;
    size_t len;
    size_t cap; /* 0 means buf points at the shared empty string */
} sb_buf_t;

extern char sb_buf_empty[];
#define SB_BUF_INIT                                                                                     \
    {                                                                                                   \
        sb_buf_empty, 0, 0                                                                              \
    }

void sb_buf_init(sb_buf_t *b);
void sb_buf_release(sb_buf_t *b); /* frees, leaves b empty and valid */
void sb_buf_reset(sb_buf_t *b);   /* len = 0, keeps capacity */
void sb_buf_grow(sb_buf_t *b, size_t extra);
void sb_buf_add(sb_buf_t *b, const void *data, size_t n);
void sb_buf_adds(sb_buf_t *b, const char *s);
void sb_buf_addch(sb_buf_t *b, char c);
void sb_buf_addf(sb_buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void sb_buf_vaddf(sb_buf_t *b, const char *fmt, va_list ap);
/* Appends s as a JSON string literal, quotes included. */
void sb_buf_add_json_str(sb_buf_t *b, const char *s, size_t n);
/* Hands the heap string to the caller (free() it) and leaves b empty. */
char *sb_buf_detach(sb_buf_t *b, size_t *len_out);

#endif
