/*
 * amount > params.min, for events and profiles: a segd plugin in C against
 * sdk/c/segd.h. Build (Debian: clang, lld, wasi-libc):
 *
 *   clang --target=wasm32-wasi -O2 -mexec-model=reactor -I../../../sdk/c -o amount_c.wasm amount.c
 *
 * Params: {"min": 100}. A missing or non-numeric "min" is refused.
 */
#include <stdlib.h>
#include <string.h>

#include "segd.h"

static double min;
static char err[256];
static int err_len;
static uint64_t *buf; /* the one region segd_alloc hands out, 8-aligned */
static size_t buf_size;

static int32_t fail(const char *msg) {
	size_t l = strlen(msg);
	if (l > sizeof err)
		l = sizeof err;
	memcpy(err, msg, l);
	err_len = (int)l;
	return 1;
}

int32_t segd_abi_version(void) { return SEGD_ABI_VERSION; }
int32_t segd_kinds(void) { return SEGD_EVENTS | SEGD_PROFILES; }

void *segd_alloc(int32_t size) {
	if ((size_t)size > buf_size) {
		free(buf);
		buf_size = ((size_t)size + 7) & ~(size_t)7;
		buf = malloc(buf_size); /* malloc aligns to 16 */
		if (!buf)
			abort(); /* a trap: the host discards the instance */
	}
	return buf;
}

/* Finds the number after "min": in a small, flat JSON object. A full JSON
 * parser is beyond an example; the host hands in compact JSON. */
int32_t segd_init(const char *params, int32_t len) {
	char text[1024];
	if (len < 0 || (size_t)len >= sizeof text)
		return fail("params: longer than 1 KiB");
	memcpy(text, params, (size_t)len);
	text[len] = 0;
	const char *p = strstr(text, "\"min\"");
	if (!p)
		return fail("params: min is required");
	p += 5;
	while (*p == ' ' || *p == ':')
		p++;
	char *end;
	min = strtod(p, &end);
	if (end == p)
		return fail("params: min must be a number");
	return 0;
}

int32_t segd_match(const uint8_t *b, int32_t len, uint64_t *out) {
	if (segd_check(b, (uint32_t)len) != 0)
		return fail("malformed batch");
	const segd_header *h = (const segd_header *)b;
	int32_t amount = segd_key(b, "amount");
	if (amount < 0)
		return 0; /* no item has an amount: nothing matches */
	/* The columns of one key: types[i] and values[i] per item. */
	const uint8_t *types = b + h->types + (uint32_t)amount * h->n;
	const double *vals = (const double *)(b + h->values) + (uint32_t)amount * h->n;
	for (uint32_t i = 0; i < h->n; i++)
		if (types[i] == SEGD_NUMBER && vals[i] > min)
			segd_set(out, i);
	return 0;
}

int64_t segd_error(void) { return err_len ? segd_pack(err, (uint32_t)err_len) : 0; }

/* Only "amount" is read: the host sends nothing else. */
int64_t segd_props(void) {
	static const char props[] = "[\"amount\"]";
	return segd_pack(props, sizeof props - 1);
}
