/* Configuration from the environment. Every variable a service reads is
 * documented in README.md (Configuration). */
#ifndef SB_CONFIG_H
#define SB_CONFIG_H
#include <stdbool.h>

#include "sb/buf.h"

/* Borrowed from the environment (or def); valid while the env is unchanged. */
const char *sb_cfg_str(const char *name, const char *def);
/* A variable that must be set: its value (borrowed, as above), or NULL with
 * "<name> is not set" appended to err when it is unset or empty. */
const char *sb_cfg_need(const char *name, sb_buf_t *err);
/* Integer in [min,max]; an unset, malformed or out-of-range value gives def
 * (malformed/out-of-range is logged as a warning). */
long sb_cfg_int(const char *name, long def, long min, long max);
bool sb_cfg_bool(const char *name, bool def);

#endif
