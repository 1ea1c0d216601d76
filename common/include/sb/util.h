/* Small helpers: ids and time. */
#ifndef SB_UTIL_H
#define SB_UTIL_H
#include <stddef.h>
#include <stdint.h>

#define SB_UUID_LEN 36
/* Writes a random (v4) UUID and NUL into out[SB_UUID_LEN + 1]. */
void sb_uuid_v4(char out[SB_UUID_LEN + 1]);
/* RFC 3339 UTC with milliseconds ("2026-11-24T09:00:00.123Z") into out[32]. */
void sb_time_rfc3339(int64_t unix_ms, char out[32]);
int64_t sb_now_ms(void);      /* wall clock, ms since epoch */
int64_t sb_mono_ns(void);     /* monotonic clock, ns */
void sb_sleep_ms(int64_t ms); /* sleeps ms (signals do not cut it short); ms <= 0: returns */
/* Fills out with n random bytes from the OS; aborts if it cannot. */
void sb_random_bytes(void *out, size_t n);

#endif
