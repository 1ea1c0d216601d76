#include "sb/buf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sb/alloc.h"

char sb_buf_empty[1];

void sb_buf_init(sb_buf_t *b)
{
    b->buf = sb_buf_empty;
    b->len = 0;
    b->cap = 0;
}

void sb_buf_release(sb_buf_t *b)
{
    if (b->cap)
        free(b->buf);
    sb_buf_init(b);
}

void sb_buf_reset(sb_buf_t *b)
{
    b->len = 0;
    if (b->cap)
        b->buf[0] = '\0';
}

void sb_buf_grow(sb_buf_t *b, size_t extra)
{
    size_t need = b->len + extra + 1;
    if (need <= b->cap)
        return;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need)
        cap *= 2;
    if (b->cap) {
        b->buf = sb_realloc(b->buf, cap);
    } else {
        b->buf = sb_malloc(cap);
        b->buf[0] = '\0';
    }
    b->cap = cap;
}

void sb_buf_add(sb_buf_t *b, const void *data, size_t n)
{
    if (!n)
        return;
    sb_buf_grow(b, n);
    memcpy(b->buf + b->len, data, n);
    b->len += n;
    b->buf[b->len] = '\0';
}

void sb_buf_adds(sb_buf_t *b, const char *s)
{
    sb_buf_add(b, s, strlen(s));
}

void sb_buf_addch(sb_buf_t *b, char c)
{
    sb_buf_add(b, &c, 1);
}

void sb_buf_vaddf(sb_buf_t *b, const char *fmt, va_list ap)
{
    va_list cp;
    va_copy(cp, ap);
    int n = vsnprintf(NULL, 0, fmt, cp);
    va_end(cp);
    if (n <= 0)
        return;
    sb_buf_grow(b, (size_t)n);
    vsnprintf(b->buf + b->len, (size_t)n + 1, fmt, ap);
    b->len += (size_t)n;
}

void sb_buf_addf(sb_buf_t *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    sb_buf_vaddf(b, fmt, ap);
    va_end(ap);
}

void sb_buf_add_json_str(sb_buf_t *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    sb_buf_grow(b, n + 2);
    sb_buf_addch(b, '"');
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        switch (c) {
        case '"': sb_buf_add(b, "\\\"", 2); break;
        case '\\': sb_buf_add(b, "\\\\", 2); break;
        case '\n': sb_buf_add(b, "\\n", 2); break;
        case '\r': sb_buf_add(b, "\\r", 2); break;
        case '\t': sb_buf_add(b, "\\t", 2); break;
        default:
            if (c < 0x20 || c == 0x7f) {
                char u[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
                sb_buf_add(b, u, 6);
            } else {
                sb_buf_addch(b, (char)c);
            }
        }
    }
    sb_buf_addch(b, '"');
}

char *sb_buf_detach(sb_buf_t *b, size_t *len_out)
{
    if (len_out)
        *len_out = b->len;
    char *p = b->cap ? b->buf : sb_strdup("");
    sb_buf_init(b);
    return p;
}
