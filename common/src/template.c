/* Embedded files and {placeholder} rendering (sb/template.h). */
#include <string.h>

#include "sb/buf.h"
#include "sb/template.h"

const sb_file_t *sb_file_find(const sb_file_set_t *s, const char *name)
{
    for (size_t i = 0; s && i < s->n; i++)
        if (strcmp(s->items[i].name, name) == 0)
            return &s->items[i];
    return NULL;
}

#define NAME_MAX_LEN 64

char *sb_template_render(sb_arena_t *a, const char *tpl, sb_template_lookup_fn lookup, void *arg)
{
    sb_buf_t b = SB_BUF_INIT;
    for (const char *p = tpl; *p;) {
        if (p[0] == '{' && p[1] == '{') {
            sb_buf_addch(&b, '{');
            p += 2;
            continue;
        }
        const char *end = p[0] == '{' ? strchr(p + 1, '}') : NULL;
        size_t n = end ? (size_t)(end - p - 1) : 0;
        if (end && n > 0 && n < NAME_MAX_LEN &&
            strspn(p + 1, "abcdefghijklmnopqrstuvwxyz_0123456789") == n) {
            char name[NAME_MAX_LEN];
            memcpy(name, p + 1, n);
            name[n] = '\0';
            const char *v = lookup(arg, name);
            if (v) {
                sb_buf_adds(&b, v);
                p = end + 1;
                continue;
            }
        }
        sb_buf_addch(&b, *p++);
    }
    char *out = sb_arena_strdup(a, b.buf);
    sb_buf_release(&b);
    return out;
}
