/*
 * Fuzz target: the control protocol decoders (messages, and the flow pages of FLOW_STATS
 * replies). Any input is either refused with an errno of ctl.h or decoded; a decoded
 * message or page encodes back to exactly the same bytes (nothing is accepted that the
 * protocol could not have produced), and no read leaves the buffer. A page is tried both
 * as the payload of a decoded REPLY and as the whole input.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "tlsnic/ctl_proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
size_t LLVMFuzzerSeedInput(size_t i, uint8_t *buf, size_t cap);

static struct tlsnic_ctl_flow_entry entries[TLSNIC_CTL_FLOW_PAGE_MAX];

static void check_flow_page(const uint8_t *page_bytes, size_t len)
{
    struct tlsnic_ctl_flow_page page;
    int err = tlsnic_ctl_flow_page_decode(page_bytes, len, &page, entries, TLSNIC_CTL_FLOW_PAGE_MAX);
    if (err == 0) {
        static uint8_t out[TLSNIC_CTL_MAX_MSG];
        int n = tlsnic_ctl_flow_page_encode(&page, entries, out, sizeof(out));
        if (n != (int)len || memcmp(out, page_bytes, len) != 0)
            abort();
    } else if (err != -EBADMSG && err != -EMSGSIZE && err != -ENOBUFS) {
        abort();
    }
}

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
        if (m.type == TLSNIC_CTL_REPLY)
            check_flow_page(m.payload, m.payload_len);
    } else if (err != -EBADMSG && err != -EPROTO && err != -EOPNOTSUPP && err != -EINVAL &&
               err != -EMSGSIZE) {
        abort();
    }
    check_flow_page(in, size);
    free(in);
    return 0;
}

size_t LLVMFuzzerSeedInput(size_t i, uint8_t *buf, size_t cap)
{
    static const uint8_t info[40] = {0x03, 0x03, 0x33, 0x00};
    /* A FLOW_STATS reply: two flows (IPv4 TX ended, IPv6 RX), four counters each. */
    static const struct tlsnic_ctl_flow_entry flows[2] = {
        {.flow = {.family = AF_INET, .local = {198, 18, 0, 1}, .local_port = 4433},
         .dir = 0, .flags = TLSNIC_CTL_FLOW_ENDED, .owner_pid = 7, .counters = {1, 2, 3, 4}},
        {.flow = {.family = AF_INET6, .remote = {0x20, 0x01, 0x0d, 0xb8}, .remote_port = 1},
         .dir = 1, .counters = {5, 0, 0, 6}},
    };
    static const struct tlsnic_ctl_flow_page page = {.total = 3, .first = 1, .count = 2,
                                                     .n_counters = 4};
    static uint8_t page_bytes[TLSNIC_CTL_FLOW_PAGE_HDR_LEN + 2 * TLSNIC_CTL_FLOW_ENTRY_LEN(4)];
    int page_len = tlsnic_ctl_flow_page_encode(&page, flows, page_bytes, sizeof(page_bytes));
    if (page_len <= 0)
        abort();
    struct tlsnic_ctl_msg seeds[] = {
        {.type = TLSNIC_CTL_ADD, .id = 1, .dir = 0, .tcp_seq = 7, .info = info, .info_len = sizeof(info)},
        {.type = TLSNIC_CTL_DEL, .id = 2, .dir = 1},
        {.type = TLSNIC_CTL_RESYNC, .id = 3, .tcp_seq = 9, .rec_seq = 11},
        {.type = TLSNIC_CTL_FLOW_FLAGS, .id = 4, .flow = {.family = AF_INET, .local_port = 1}},
        {.type = TLSNIC_CTL_STATS, .id = 5},
        {.type = TLSNIC_CTL_REPLY, .id = 6, .status = -EPERM, .text = "no", .text_len = 2,
         .payload = (const uint8_t *)"x 1\n", .payload_len = 4},
        {.type = TLSNIC_CTL_FLOW_STATS, .id = 7, .first = 3},
        {.type = TLSNIC_CTL_REPLY, .id = 8, .text = "ok", .text_len = 2, .payload = page_bytes,
         .payload_len = (uint32_t)page_len},
    };
    /* Added after the page (the seed files keep their numbers): RELEASE (type 7) and REKEY
     * (type 8: the RX branch had it at 7 before RELEASE took that number). */
    struct tlsnic_ctl_msg later[] = {
        {.type = TLSNIC_CTL_RELEASE, .id = 9, .dir = 0, .release_flags = TLSNIC_CTL_RELEASE_ABORT},
        {.type = TLSNIC_CTL_REKEY, .id = 10, .dir = 1, .tcp_seq = 5100, .info = info,
         .info_len = sizeof(info)},
    };
    size_t n = sizeof(seeds) / sizeof(seeds[0]);
    if (i == n) { /* the page alone, for the page decoder */
        if ((size_t)page_len > cap)
            return 0;
        memcpy(buf, page_bytes, (size_t)page_len);
        return (size_t)page_len;
    }
    if (i > n + sizeof(later) / sizeof(later[0]))
        return 0;
    int len = tlsnic_ctl_encode(i > n ? &later[i - n - 1] : &seeds[i], buf, cap);
    return len > 0 ? (size_t)len : 0;
}
