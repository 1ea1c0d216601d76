/* Text templates: files embedded at build time from services/<name>/templates
 * (cmake/SbService.cmake) and a renderer of {placeholder}s.
 *
 *     SB_SERVICE_TEMPLATES(notification);   // sb_notification_templates
 *     const sb_file_t *f = sb_file_find(&sb_notification_templates, "ko/payment_approved.txt");
 *     char *text = sb_template_render(a, f->data, lookup, &facts);
 *
 * In a template "{name}" becomes lookup(arg, "name"); a name lookup does not
 * know (NULL) is left as written; "{{" is a literal "{". */
#ifndef SB_TEMPLATE_H
#define SB_TEMPLATE_H
#include <stddef.h>

#include "sb/arena.h"

typedef struct sb_file {
    const char *name; /* the path below the folder: "ko/payment_approved.txt" */
    const char *data; /* NUL-terminated */
    size_t len;
} sb_file_t;

typedef struct sb_file_set {
    const sb_file_t *items;
    size_t n;
} sb_file_set_t;

#define SB_SERVICE_TEMPLATES(name) extern const sb_file_set_t sb_##name##_templates

/* The file called name, or NULL. Borrowed (static). */
const sb_file_t *sb_file_find(const sb_file_set_t *s, const char *name);

/* The value of placeholder `name` (borrowed until the render returns), or NULL. */
typedef const char *(*sb_template_lookup_fn)(void *arg, const char *name);

/* tpl with its placeholders replaced, in arena a. */
char *sb_template_render(sb_arena_t *a, const char *tpl, sb_template_lookup_fn lookup, void *arg);

#endif
