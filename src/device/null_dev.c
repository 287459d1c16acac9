/*
 * The NULL device (nic.h): takes every flow and touches no byte. Records framed for it
 * leave as the host framed them, so what a host costs with it is the host's own work in
 * device mode without any crypto: the floor under any offload (the paper's NULL-cipher
 * row). Never offered to real traffic by tlsnic itself; the bench binds sockets to it.
 */
#include "tlsnic/nic.h"

static int null_add(struct tlsnic_dev *dev, int sockfd, const struct tlsnic_flow *flow,
                    enum tlsnic_dir dir, const void *crypto_info, size_t info_len,
                    uint32_t start_tcp_seq, const struct tlsnic_rec_store *store)
{
    return 0;
}

static int null_del(struct tlsnic_dev *dev, int sockfd, const struct tlsnic_flow *flow,
                    enum tlsnic_dir dir)
{
    return 0;
}

static int null_resync(struct tlsnic_dev *dev, int sockfd, const struct tlsnic_flow *flow,
                       enum tlsnic_dir dir, uint32_t tcp_seq, uint64_t rec_seq)
{
    return 0;
}

static int null_flow_flags(struct tlsnic_dev *dev, const struct tlsnic_flow *flow,
                           enum tlsnic_dir dir, uint32_t *flags)
{
    *flags = 0;
    return 0;
}

static const struct tlsnic_dev_ops null_ops = {
    .name = "null",
    .add = null_add,
    .del = null_del,
    .resync = null_resync,
    .flow_flags = null_flow_flags,
};

static struct tlsnic_dev null_dev = {.ops = &null_ops};

struct tlsnic_dev *tlsnic_null_dev(void)
{
    return &null_dev;
}
