/* Configuration from the environment. Every variable a service reads is
 * documented in README.md (Configuration). */
#ifndef SB_CONFIG_H
#define SB_CONFIG_H
#include <stdbool.h>

/* Borrowed from the environment (or def); valid while the env is unchanged. */
const char *sb_cfg_str(const char *name, const char *def);
/* Integer in [min,max]; an unset, malformed or out-of-range value gives def
 * (malformed/out-of-range is logged as a warning). */
long sb_cfg_int(const char *name, long def, long min, long max);
bool sb_cfg_bool(const char *name, bool def);

#endif
