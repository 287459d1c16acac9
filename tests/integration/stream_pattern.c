#include "stream_pattern.h"

#include <string.h>

#define PERIOD 1048573u /* prime: the pattern never lines up with record boundaries */

static uint8_t pattern[PERIOD + 131072 + 16384 * 4];
static int ready;

static void init(void)
{
    if (ready)
        return;
    uint32_t x = 0x12345678u;
    for (size_t i = 0; i < sizeof(pattern); i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        pattern[i] = (uint8_t)x;
    }
    /* the tail repeats the head so any window of up to the tail's size is contiguous */
    memcpy(pattern + PERIOD, pattern, sizeof(pattern) - PERIOD);
    ready = 1;
}

void stream_fill(uint64_t off, uint8_t *out, size_t len)
{
    init();
    while (len > 0) {
        size_t at = (size_t)(off % PERIOD);
        size_t n = len < sizeof(pattern) - at ? len : sizeof(pattern) - at;
        memcpy(out, pattern + at, n);
        out += n;
        off += n;
        len -= n;
    }
}

int stream_check(uint64_t off, const uint8_t *buf, size_t len)
{
    init();
    while (len > 0) {
        size_t at = (size_t)(off % PERIOD);
        size_t n = len < sizeof(pattern) - at ? len : sizeof(pattern) - at;
        if (memcmp(buf, pattern + at, n) != 0)
            return 0;
        buf += n;
        off += n;
        len -= n;
    }
    return 1;
}

size_t stream_write_size(unsigned n)
{
    static const size_t sizes[] = {1,     2,     5,     100,   1457,  1500,  4096,
                                   8191,  16383, 16384, 16385, 40000, 65536, 131072};
    return sizes[n % (sizeof(sizes) / sizeof(sizes[0]))];
}

size_t stream_read_size(unsigned n)
{
    static const size_t sizes[] = {1, 7, 1000, 16384, 16400, 65536, 3};
    return sizes[n % (sizeof(sizes) / sizeof(sizes[0]))];
}
