/*
 * Fuzz target: the control protocol decoder. Any input is either refused with an errno of
 * ctl.h or decoded; a decoded message encodes back to exactly the same bytes (nothing is
 * accepted that the protocol could not have produced), and no read leaves the buffer.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "tlsnic/ctl.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
size_t LLVMFuzzerSeedInput(size_t i, uint8_t *buf, size_t cap);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* A copy of exactly size bytes, so ASan sees any read past the end. */
    uint8_t *in = malloc(size ? size : 1);
    if (in == NULL)
        return 0;
    memcpy(in, data, size);
    struct tlsnic_ctl_msg m;
    int err = tlsnic_ctl_decode(in, size, &m);
    if (err == 0) {
        static uint8_t out[TLSNIC_CTL_MAX_MSG];
        int len = tlsnic_ctl_encode(&m, out, sizeof(out));
        if (len != (int)size || memcmp(out, in, size) != 0)
            abort();
    } else if (err != -EBADMSG && err != -EPROTO && err != -EOPNOTSUPP && err != -EINVAL &&
               err != -EMSGSIZE) {
        abort();
    }
    free(in);
    return 0;
}

size_t LLVMFuzzerSeedInput(size_t i, uint8_t *buf, size_t cap)
{
    static const uint8_t info[40] = {0x03, 0x03, 0x33, 0x00};
    struct tlsnic_ctl_msg seeds[] = {
        {.type = TLSNIC_CTL_ADD, .id = 1, .dir = 0, .tcp_seq = 7, .info = info, .info_len = sizeof(info)},
        {.type = TLSNIC_CTL_DEL, .id = 2, .dir = 1},
        {.type = TLSNIC_CTL_RESYNC, .id = 3, .tcp_seq = 9, .rec_seq = 11},
        {.type = TLSNIC_CTL_FLOW_FLAGS, .id = 4, .flow = {.family = AF_INET, .local_port = 1}},
        {.type = TLSNIC_CTL_STATS, .id = 5},
        {.type = TLSNIC_CTL_REPLY, .id = 6, .status = -EPERM, .text = "no", .text_len = 2,
         .payload = (const uint8_t *)"x 1\n", .payload_len = 4},
    };
    if (i >= sizeof(seeds) / sizeof(seeds[0]))
        return 0;
    int len = tlsnic_ctl_encode(&seeds[i], buf, cap);
    return len > 0 ? (size_t)len : 0;
}
