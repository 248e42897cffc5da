/*
 * escape.h - how the cairn tool shows and accepts byte strings: keys and
 * values are arbitrary bytes, terminals and scripts want text.
 *
 * Output: printable ASCII as is, a backslash doubled, every other byte as
 * \xNN (lowercase hex). So a key never prints with a tab or newline in it,
 * and the escaped form read back with esc_unescape gives the same bytes.
 * Input (with -x): \xNN for any byte, \\ for a backslash, \n, \t, \r, \0.
 */
#ifndef CAIRN_CLI_ESCAPE_H
#define CAIRN_CLI_ESCAPE_H

#include <stddef.h>
#include <stdio.h>

/* Decodes the escapes of in into a malloc'd buffer (*out, *outlen; the caller
 * frees it). Returns 0, -1 for a malformed escape (*bad set to its byte
 * offset) or -2 when out of memory. */
int esc_unescape(const char *in, char **out, size_t *outlen, size_t *bad);

/* Writes len bytes of data to f in the escaped form. */
void esc_print(FILE *f, const void *data, size_t len);

#endif
