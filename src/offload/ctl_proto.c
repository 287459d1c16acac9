/* Control protocol encode/decode (see ctl.h for the layout). */
#include <errno.h>
#include <sys/socket.h>

#include "cursor.h"
#include "tlsnic/check.h"
#include "tlsnic/ctl_proto.h"

static bool type_has_dir(uint16_t type)
{
    return type == TLSNIC_CTL_ADD || type == TLSNIC_CTL_DEL || type == TLSNIC_CTL_RESYNC ||
           type == TLSNIC_CTL_FLOW_FLAGS || type == TLSNIC_CTL_RELEASE ||
           type == TLSNIC_CTL_REKEY;
}

int tlsnic_ctl_encode(const struct tlsnic_ctl_msg *m, uint8_t *buf, size_t cap)
{
    if (m == NULL || buf == NULL)
        return -EINVAL;
    if (type_has_dir(m->type) && m->dir > 1)
        return -EINVAL;
    if ((m->type == TLSNIC_CTL_ADD || m->type == TLSNIC_CTL_REKEY) && (m->info_len > TLSNIC_CTL_MAX_INFO || (m->info == NULL && m->info_len > 0)))
        return -EMSGSIZE;
    if (m->type == TLSNIC_CTL_FLOW_FLAGS && m->flow.family != AF_INET && m->flow.family != AF_INET6)
        return -EINVAL;
    if (m->type == TLSNIC_CTL_RELEASE && (m->release_flags & ~TLSNIC_CTL_RELEASE_FLAGS) != 0)
        return -EINVAL;
    if (m->type == TLSNIC_CTL_REPLY &&
        (m->text_len > TLSNIC_CTL_MAX_TEXT || (m->text == NULL && m->text_len > 0) ||
         (m->payload == NULL && m->payload_len > 0) || m->payload_len > TLSNIC_CTL_MAX_MSG))
        return -EMSGSIZE;

    struct wcursor c = {.p = buf, .left = cap};
    uint8_t *len_at = wc_take(&c, 4);
    wc_le(&c, TLSNIC_CTL_VERSION, 2);
    wc_le(&c, m->type, 2);
    wc_le(&c, m->id, 4);
    switch (m->type) {
    case TLSNIC_CTL_ADD:
    case TLSNIC_CTL_REKEY:
        wc_le(&c, m->dir, 1);
        wc_zeros(&c, 3);
        wc_le(&c, m->tcp_seq, 4);
        wc_le(&c, m->info_len, 2);
        wc_zeros(&c, 2);
        wc_bytes(&c, m->info, m->info_len);
        break;
    case TLSNIC_CTL_DEL:
        wc_le(&c, m->dir, 1);
        wc_zeros(&c, 3);
        break;
    case TLSNIC_CTL_RELEASE:
        wc_le(&c, m->dir, 1);
        wc_le(&c, m->release_flags, 1);
        wc_zeros(&c, 2);
        break;
    case TLSNIC_CTL_RESYNC:
        wc_le(&c, m->dir, 1);
        wc_zeros(&c, 3);
        wc_le(&c, m->tcp_seq, 4);
        wc_le(&c, m->rec_seq, 8);
        break;
    case TLSNIC_CTL_FLOW_FLAGS:
        wc_le(&c, m->dir, 1);
        wc_zeros(&c, 3);
        wc_le(&c, m->flow.family, 1);
        wc_zeros(&c, 3);
        wc_bytes(&c, m->flow.local, 16);
        wc_bytes(&c, m->flow.remote, 16);
        wc_le(&c, m->flow.local_port, 2);
        wc_le(&c, m->flow.remote_port, 2);
        break;
    case TLSNIC_CTL_STATS:
        break;
    case TLSNIC_CTL_FLOW_STATS:
        wc_le(&c, m->first, 4);
        wc_zeros(&c, 4);
        break;
    case TLSNIC_CTL_REPLY:
        wc_le(&c, (uint32_t)m->status, 4);
        wc_le(&c, m->text_len, 2);
        wc_zeros(&c, 2);
        wc_bytes(&c, m->text, m->text_len);
        wc_bytes(&c, m->payload, m->payload_len);
        break;
    default:
        return -EINVAL;
    }
    if (c.bad || len_at == NULL)
        return -ENOBUFS;
    size_t len = cap - c.left;
    if (len > TLSNIC_CTL_MAX_MSG)
        return -EMSGSIZE;
    struct wcursor lc = {.p = len_at, .left = 4};
    wc_le(&lc, len, 4);
    return (int)len;
}

int tlsnic_ctl_decode(const uint8_t *buf, size_t len, struct tlsnic_ctl_msg *m)
{
    if (buf == NULL || m == NULL)
        return -EINVAL;
    if (len > TLSNIC_CTL_MAX_MSG)
        return -EMSGSIZE;
    memset(m, 0, sizeof(*m));
    struct rcursor c = {.p = buf, .left = len};
    uint32_t msg_len = rc_u32(&c);
    uint16_t version = rc_u16(&c);
    m->type = rc_u16(&c);
    m->id = rc_u32(&c);
    if (c.bad || msg_len != len)
        return -EBADMSG;
    if (version != TLSNIC_CTL_VERSION)
        return -EPROTO;
    switch (m->type) {
    case TLSNIC_CTL_ADD:
    case TLSNIC_CTL_REKEY:
        m->dir = rc_u8(&c);
        rc_zeros(&c, 3);
        m->tcp_seq = rc_u32(&c);
        m->info_len = rc_u16(&c);
        rc_zeros(&c, 2);
        if (!c.bad && m->info_len > TLSNIC_CTL_MAX_INFO)
            return -EMSGSIZE;
        m->info = rc_take(&c, m->info_len);
        break;
    case TLSNIC_CTL_DEL:
        m->dir = rc_u8(&c);
        rc_zeros(&c, 3);
        break;
    case TLSNIC_CTL_RELEASE:
        m->dir = rc_u8(&c);
        m->release_flags = rc_u8(&c);
        rc_zeros(&c, 2);
        if (!c.bad && (m->release_flags & ~TLSNIC_CTL_RELEASE_FLAGS) != 0)
            return -EINVAL;
        break;
    case TLSNIC_CTL_RESYNC:
        m->dir = rc_u8(&c);
        rc_zeros(&c, 3);
        m->tcp_seq = rc_u32(&c);
        m->rec_seq = rc_u64(&c);
        break;
    case TLSNIC_CTL_FLOW_FLAGS: {
        m->dir = rc_u8(&c);
        rc_zeros(&c, 3);
        m->flow.family = rc_u8(&c);
        rc_zeros(&c, 3);
        const uint8_t *local = rc_take(&c, 16);
        const uint8_t *remote = rc_take(&c, 16);
        m->flow.local_port = rc_u16(&c);
        m->flow.remote_port = rc_u16(&c);
        if (c.bad)
            return -EBADMSG;
        memcpy(m->flow.local, local, 16);
        memcpy(m->flow.remote, remote, 16);
        if (m->flow.family != AF_INET && m->flow.family != AF_INET6)
            return -EBADMSG;
        break;
    }
    case TLSNIC_CTL_STATS:
        break;
    case TLSNIC_CTL_FLOW_STATS:
        m->first = rc_u32(&c);
        rc_zeros(&c, 4);
        break;
    case TLSNIC_CTL_REPLY:
        m->status = (int32_t)rc_u32(&c);
        m->text_len = rc_u16(&c);
        rc_zeros(&c, 2);
        if (!c.bad && m->text_len > TLSNIC_CTL_MAX_TEXT)
            return -EMSGSIZE;
        m->text = (const char *)rc_take(&c, m->text_len);
        m->payload_len = (uint32_t)c.left;
        m->payload = rc_take(&c, c.left);
        /* A status is 0 or a negative errno; anything else is not from a daemon. */
        if (!c.bad && (m->status > 0 || m->status < -4095))
            return -EBADMSG;
        break;
    default:
        return -EOPNOTSUPP;
    }
    if (c.bad || c.left != 0)
        return -EBADMSG;
    if (type_has_dir(m->type) && m->dir > 1)
        return -EINVAL;
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Flow pages (FLOW_STATS replies).                                                           */

static const char *const flow_counter_names[] = {
#define NAME_(name) #name,
    TLSNIC_CTL_FLOW_COUNTER_LIST(NAME_)
#undef NAME_
};

const char *tlsnic_ctl_flow_counter_name(unsigned i)
{
    return i < TLSNIC_CTL_FLOW_COUNTERS ? flow_counter_names[i] : NULL;
}

#define KNOWN_FLOW_FLAGS                                                                      \
    (TLSNIC_CTL_FLOW_ENDED | TLSNIC_CTL_FLOW_NO_COUNTERS | TLSNIC_CTL_FLOW_FINISHING)

static bool flow_entry_valid(const struct tlsnic_ctl_flow_entry *e)
{
    return (e->flow.family == AF_INET || e->flow.family == AF_INET6) && e->dir <= 1 &&
           (e->flags & ~KNOWN_FLOW_FLAGS) == 0;
}

int tlsnic_ctl_flow_page_encode(const struct tlsnic_ctl_flow_page *page,
                                const struct tlsnic_ctl_flow_entry *entries, uint8_t *buf,
                                size_t cap)
{
    TLSNIC_ENSURE(page != NULL && buf != NULL && (entries != NULL || page->count == 0), EINVAL);
    TLSNIC_ENSURE(page->n_counters <= TLSNIC_CTL_FLOW_MAX_COUNTERS, EINVAL);
    TLSNIC_ENSURE((uint64_t)page->first + page->count <= page->total, EINVAL);
    struct wcursor c = {.p = buf, .left = cap};
    wc_le(&c, page->total, 4);
    wc_le(&c, page->first, 4);
    wc_le(&c, page->count, 2);
    wc_le(&c, page->n_counters, 2);
    wc_zeros(&c, 4);
    for (uint32_t i = 0; i < page->count; i++) {
        const struct tlsnic_ctl_flow_entry *e = &entries[i];
        TLSNIC_ENSURE(flow_entry_valid(e), EINVAL);
        wc_le(&c, e->flow.family, 1);
        wc_le(&c, e->dir, 1);
        wc_le(&c, e->flags, 1);
        wc_zeros(&c, 1);
        wc_le(&c, e->owner_pid, 4);
        wc_bytes(&c, e->flow.local, 16);
        wc_bytes(&c, e->flow.remote, 16);
        wc_le(&c, e->flow.local_port, 2);
        wc_le(&c, e->flow.remote_port, 2);
        wc_zeros(&c, 4);
        for (uint32_t k = 0; k < page->n_counters; k++)
            wc_le(&c, e->counters[k], 8);
    }
    TLSNIC_ENSURE(!c.bad, ENOBUFS);
    return (int)(cap - c.left);
}

int tlsnic_ctl_flow_page_decode(const uint8_t *buf, size_t len, struct tlsnic_ctl_flow_page *page,
                                struct tlsnic_ctl_flow_entry *entries, size_t cap)
{
    TLSNIC_ENSURE(buf != NULL && page != NULL && (entries != NULL || cap == 0), EINVAL);
    struct rcursor c = {.p = buf, .left = len};
    memset(page, 0, sizeof(*page));
    page->total = rc_u32(&c);
    page->first = rc_u32(&c);
    page->count = rc_u16(&c);
    page->n_counters = rc_u16(&c);
    rc_zeros(&c, 4);
    TLSNIC_ENSURE(!c.bad, EBADMSG);
    TLSNIC_ENSURE(page->n_counters <= TLSNIC_CTL_FLOW_MAX_COUNTERS, EMSGSIZE);
    TLSNIC_ENSURE((uint64_t)page->first + page->count <= page->total, EBADMSG);
    /* Exactly count entries must follow: checked before any is written to the caller. */
    TLSNIC_ENSURE(c.left == (size_t)page->count * TLSNIC_CTL_FLOW_ENTRY_LEN(page->n_counters),
                  EBADMSG);
    TLSNIC_ENSURE(page->count <= cap, ENOBUFS);
    for (uint32_t i = 0; i < page->count; i++) {
        struct tlsnic_ctl_flow_entry *e = &entries[i];
        memset(e, 0, sizeof(*e));
        e->flow.family = rc_u8(&c);
        e->dir = rc_u8(&c);
        e->flags = rc_u8(&c);
        rc_zeros(&c, 1);
        e->owner_pid = rc_u32(&c);
        const uint8_t *local = rc_take(&c, 16);
        const uint8_t *remote = rc_take(&c, 16);
        e->flow.local_port = rc_u16(&c);
        e->flow.remote_port = rc_u16(&c);
        rc_zeros(&c, 4);
        for (uint32_t k = 0; k < page->n_counters; k++)
            e->counters[k] = rc_u64(&c);
        TLSNIC_ENSURE(!c.bad, EBADMSG);
        memcpy(e->flow.local, local, 16);
        memcpy(e->flow.remote, remote, 16);
        TLSNIC_ENSURE(flow_entry_valid(e), EBADMSG);
    }
    TLSNIC_ENSURE(c.left == 0, EBADMSG);
    return 0;
}
