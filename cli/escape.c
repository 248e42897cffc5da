/*
 * escape.c - escaping and unescaping of byte strings for the cairn tool
 * (see escape.h for the two forms).
 */
#include "escape.h"

#include <stdlib.h>
#include <string.h>

static int hex_digit(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Decodes the escape at in[i] (in[i] == '\\'); returns its length or 0. */
static size_t decode_one(const char *in, size_t i, char *byte)
{
	static const char from[] = "\\ntr0", to[] = "\\\n\t\r";
	if (in[i + 1] == 'x') {
		int hi = hex_digit(in[i + 2]), lo = hi < 0 ? -1 : hex_digit(in[i + 3]);
		if (hi < 0 || lo < 0)
			return 0;
		*byte = (char)(hi * 16 + lo);
		return 4;
	}
	if (in[i + 1] == 0)
		return 0;
	const char *p = strchr(from, in[i + 1]);
	if (!p)
		return 0;
	*byte = to[p - from]; /* "0" maps to the terminating NUL of to */
	return 2;
}

int esc_unescape(const char *in, char **out, size_t *outlen, size_t *bad)
{
	size_t n = strlen(in), o = 0;
	char *buf = malloc(n + 1);
	if (!buf)
		return -2;
	for (size_t i = 0; i < n;) {
		if (in[i] != '\\') {
			buf[o++] = in[i++];
			continue;
		}
		size_t len = decode_one(in, i, &buf[o]);
		if (!len) {
			free(buf);
			*bad = i;
			return -1;
		}
		o++;
		i += len;
	}
	*out = buf;
	*outlen = o;
	return 0;
}

void esc_print(FILE *f, const void *data, size_t len)
{
	const unsigned char *p = data;
	for (size_t i = 0; i < len; i++) {
		if (p[i] == '\\')
			fputs("\\\\", f);
		else if (p[i] >= 0x20 && p[i] < 0x7f)
			putc(p[i], f);
		else
			fprintf(f, "\\x%02x", p[i]);
	}
}
