/*
 * The error-check macros every layer uses (negative errno convention): one line per
 * checked call, so an error path is never forgotten.
 */
#ifndef TLSNIC_CHECK_H
#define TLSNIC_CHECK_H

/* Evaluates expr once; returns its value from the enclosing function if negative. */
#define TLSNIC_TRY(expr)                                                                      \
    do {                                                                                      \
        int try_rc_ = (expr);                                                                 \
        if (try_rc_ < 0)                                                                      \
            return try_rc_;                                                                   \
    } while (0)

/* Returns -err from the enclosing function unless cond holds. */
#define TLSNIC_ENSURE(cond, err)                                                              \
    do {                                                                                      \
        if (!(cond))                                                                          \
            return -(err);                                                                    \
    } while (0)

#endif
