/* A self-signed certificate made in memory (see selfcert.h). */
#include <errno.h>
#include <stddef.h>

#include <openssl/x509.h>

#include "tlsnic/check.h"
#include "selfcert.h"

/* notBefore a minute back: a peer whose clock is a little behind still accepts it. */
#define CLOCK_SKEW_S 60

int tlsnic_selfcert_new(const char *cn, int days, EVP_PKEY **key_out, X509 **cert_out)
{
    TLSNIC_ENSURE(cn != NULL && cn[0] != '\0' && days >= 1 && key_out != NULL && cert_out != NULL,
                  EINVAL);
    EVP_PKEY *key = EVP_EC_gen("P-256");
    X509 *cert = X509_new();
    X509_NAME *name = X509_NAME_new();
    int ok = key != NULL && cert != NULL && name != NULL &&
             X509_set_version(cert, X509_VERSION_3) &&
             ASN1_INTEGER_set(X509_get_serialNumber(cert), 1) &&
             X509_gmtime_adj(X509_getm_notBefore(cert), -CLOCK_SKEW_S) &&
             X509_gmtime_adj(X509_getm_notAfter(cert), 60L * 60 * 24 * days) &&
             X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1,
                                        -1, 0) &&
             X509_set_subject_name(cert, name) && X509_set_issuer_name(cert, name) &&
             X509_set_pubkey(cert, key) && X509_sign(cert, key, EVP_sha256()) > 0;
    X509_NAME_free(name);
    if (!ok) {
        X509_free(cert);
        EVP_PKEY_free(key);
        return -ENOMEM;
    }
    *key_out = key;
    *cert_out = cert;
    return 0;
}
