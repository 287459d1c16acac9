/*
 * Fuzz target: bytes from the network through record parsing and opening, for every
 * version x cipher. Whatever the input, tlsnic_rec_parse_header / tlsnic_rec_open return
 * 0 or one of their documented errnos and never touch memory outside the record.
 * Input: byte 0 picks the combination, the rest is a stream of records.
 */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tlsnic/record.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
size_t LLVMFuzzerSeedInput(size_t i, uint8_t *buf, size_t cap);

static const uint16_t versions[2] = {TLS_1_2_VERSION, TLS_1_3_VERSION};
static const uint16_t ciphers[3] = {TLS_CIPHER_AES_GCM_128, TLS_CIPHER_AES_GCM_256,
                                    TLS_CIPHER_CHACHA20_POLY1305};

static tlsnic_rec_key *make_key(uint8_t selector)
{
    union tlsnic_crypto_info ci;
    memset(&ci, 0x17, sizeof(ci));
    ci.info.version = versions[selector % 2];
    ci.info.cipher_type = ciphers[(selector / 2) % 3];
    memset(ci.aes_gcm_128.rec_seq, 0, 8);
    memset(ci.aes_gcm_256.rec_seq, 0, 8);
    memset(ci.chacha20_poly1305.rec_seq, 0, 8);
    tlsnic_rec_key *key = NULL;
    if (tlsnic_rec_key_new(&key, &ci, tlsnic_crypto_info_size(ci.info.cipher_type)) != 0)
        abort();
    return key;
}

static int is_documented(int rc)
{
    return rc == 0 || rc == -EINVAL || rc == -EMSGSIZE || rc == -EBADMSG || rc == -EOVERFLOW;
}

/* Well-formed inputs to mutate: a few valid records for each combination. */
size_t LLVMFuzzerSeedInput(size_t i, uint8_t *buf, size_t cap)
{
    if (i >= 6 || cap < 1 + 3 * (64 + 40))
        return 0;
    buf[0] = (uint8_t)i;
    tlsnic_rec_key *key = make_key((uint8_t)i);
    size_t len = 1;
    static const uint8_t content[64] = "tlsnic fuzz seed content, any bytes will do here.";
    for (int r = 0; r < 3; r++) {
        size_t rec_len;
        if (tlsnic_rec_seal(key, TLSNIC_CT_APPLICATION_DATA, content, 20 * (size_t)r + 1,
                            buf + len, cap - len, &rec_len) != 0)
            abort();
        len += rec_len;
    }
    tlsnic_rec_key_free(key);
    return len;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    tlsnic_rec_key *key = make_key(data[0]);
    size_t off = 1;
    while (size - off >= TLSNIC_REC_HDR_LEN) {
        int total = tlsnic_rec_parse_header(key, data + off);
        if (!is_documented(total < 0 ? total : 0))
            abort();
        if (total < 0 || (size_t)total > size - off)
            break;
        uint8_t *rec = malloc((size_t)total);
        if (rec == NULL)
            abort();
        memcpy(rec, data + off, (size_t)total);
        uint8_t type, *content;
        size_t content_len;
        int rc = tlsnic_rec_open(key, rec, (size_t)total, &type, &content, &content_len);
        if (!is_documented(rc))
            abort();
        if (rc == 0 && (content < rec || content + content_len > rec + total ||
                        content_len > TLSNIC_REC_MAX_PLAINTEXT))
            abort();
        free(rec);
        if (rc != 0)
            break; /* as in the kernel, the stream is dead after a bad record */
        off += (size_t)total;
    }
    tlsnic_rec_key_free(key);
    return 0;
}
