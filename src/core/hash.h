/*
 * core/hash — content hashes (SHA-256 through OpenSSL's libcrypto).
 */
#ifndef SHOAL_CORE_HASH_H
#define SHOAL_CORE_HASH_H

#include <stddef.h>

/* Writes the lowercase hex SHA-256 of buf[0..len) and a NUL into hex (65 bytes).
 * Returns 0, or -1 when libcrypto fails (hex is then ""). */
int hash_sha256_hex(const void *buf, size_t len, char hex[65]);

#endif
