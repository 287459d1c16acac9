/*
 * The device behind tlsnicd's control channel until the device model plugs in: a fixed
 * table of offloaded (flow, direction) contexts with their keys, answering add / del /
 * resync / flow_flags with the errnos of devops.h. It touches no packet.
 */
#include <errno.h>
#include <openssl/crypto.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "flowtable.h"
#include "tlsnic/record.h"

#define DEFAULT_MAX_FLOWS 4096u

struct flow_ctx {
    bool used;
    struct tlsnic_flow flow;
    enum tlsnic_dir dir;
    union tlsnic_crypto_info info;
    size_t info_len;
    uint32_t resync_tcp_seq;   /* start, then the last resync point */
    uint64_t resync_rec_seq;
};

struct tlsnic_flowtable {
    struct tlsnic_dev dev;
    struct flow_ctx *ctx;
    uint32_t max_flows;
    _Atomic uint32_t count; /* read by tests while a serving thread adds */
};

static bool flow_equal(const struct tlsnic_flow *a, const struct tlsnic_flow *b)
{
    return a->family == b->family && a->local_port == b->local_port &&
           a->remote_port == b->remote_port && memcmp(a->local, b->local, 16) == 0 &&
           memcmp(a->remote, b->remote, 16) == 0;
}

static struct flow_ctx *find(struct tlsnic_flowtable *t, const struct tlsnic_flow *flow,
                             enum tlsnic_dir dir)
{
    for (uint32_t i = 0; i < t->max_flows; i++) {
        if (t->ctx[i].used && t->ctx[i].dir == dir && flow_equal(&t->ctx[i].flow, flow))
            return &t->ctx[i];
    }
    return NULL;
}

static int ft_add(struct tlsnic_dev *dev, int sockfd, const struct tlsnic_flow *flow,
                  enum tlsnic_dir dir, const void *crypto_info, size_t info_len,
                  uint32_t start_tcp_seq, const struct tlsnic_rec_store *store)
{
    struct tlsnic_flowtable *t = dev->priv;
    if (flow == NULL || crypto_info == NULL || (dir != TLSNIC_DIR_TX && dir != TLSNIC_DIR_RX))
        return -EINVAL;
    int err = tlsnic_crypto_info_check(crypto_info, info_len);
    if (err < 0)
        return err;
    if (find(t, flow, dir) != NULL)
        return -EEXIST;
    for (uint32_t i = 0; i < t->max_flows; i++) {
        struct flow_ctx *c = &t->ctx[i];
        if (c->used)
            continue;
        c->used = true;
        c->flow = *flow;
        c->dir = dir;
        memcpy(&c->info, crypto_info, info_len);
        c->info_len = info_len;
        c->resync_tcp_seq = start_tcp_seq;
        c->resync_rec_seq = 0; /* the record at start_tcp_seq has crypto_info's rec_seq */
        atomic_fetch_add(&t->count, 1);
        return 0;
    }
    return -ENOSPC;
}

static void wipe(struct flow_ctx *c)
{
    OPENSSL_cleanse(c, sizeof(*c));
    c->used = false;
}

static int ft_del(struct tlsnic_dev *dev, int sockfd, const struct tlsnic_flow *flow,
                  enum tlsnic_dir dir)
{
    struct tlsnic_flowtable *t = dev->priv;
    struct flow_ctx *c = flow != NULL ? find(t, flow, dir) : NULL;
    if (c == NULL)
        return -ENOENT;
    wipe(c);
    atomic_fetch_sub(&t->count, 1);
    return 0;
}

static int ft_resync(struct tlsnic_dev *dev, int sockfd, const struct tlsnic_flow *flow,
                     enum tlsnic_dir dir, uint32_t tcp_seq, uint64_t rec_seq)
{
    struct tlsnic_flowtable *t = dev->priv;
    struct flow_ctx *c = flow != NULL ? find(t, flow, dir) : NULL;
    if (c == NULL)
        return -ENOENT;
    c->resync_tcp_seq = tcp_seq;
    c->resync_rec_seq = rec_seq;
    return 0;
}

static int ft_flow_flags(struct tlsnic_dev *dev, const struct tlsnic_flow *flow,
                         enum tlsnic_dir dir, uint32_t *flags)
{
    struct tlsnic_flowtable *t = dev->priv;
    if (flags == NULL)
        return -EINVAL;
    if (flow == NULL || find(t, flow, dir) == NULL)
        return -ENOENT;
    *flags = 0; /* a table raises nothing: it sees no packet */
    return 0;
}

static const struct tlsnic_dev_ops flowtable_ops = {
    .name = "flowtable",
    .add = ft_add,
    .del = ft_del,
    .resync = ft_resync,
    .flow_flags = ft_flow_flags,
};

int tlsnic_flowtable_new(struct tlsnic_flowtable **out, uint32_t max_flows)
{
    if (out == NULL)
        return -EINVAL;
    struct tlsnic_flowtable *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return -ENOMEM;
    t->max_flows = max_flows ? max_flows : DEFAULT_MAX_FLOWS;
    t->ctx = calloc(t->max_flows, sizeof(*t->ctx));
    if (t->ctx == NULL) {
        free(t);
        return -ENOMEM;
    }
    t->dev.ops = &flowtable_ops;
    t->dev.priv = t;
    *out = t;
    return 0;
}

void tlsnic_flowtable_free(struct tlsnic_flowtable *t)
{
    if (t == NULL)
        return;
    OPENSSL_cleanse(t->ctx, sizeof(*t->ctx) * t->max_flows);
    free(t->ctx);
    free(t);
}

struct tlsnic_dev *tlsnic_flowtable_dev(struct tlsnic_flowtable *t)
{
    return &t->dev;
}

uint32_t tlsnic_flowtable_count(const struct tlsnic_flowtable *t)
{
    return atomic_load(&((struct tlsnic_flowtable *)t)->count);
}
