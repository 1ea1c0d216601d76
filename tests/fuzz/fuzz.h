/* libFuzzer harness entry point; replay_main.c drives the same function over
 * a checked-in corpus when the build is not a fuzzing build (make test). */
#ifndef SB_FUZZ_H
#define SB_FUZZ_H
#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#endif
