/*
 * segd.h: the segd plugin ABI, version 1.1, for C (and anything that
 * compiles to wasm32 with clang). The contract is sdk/ABI.md in the segd
 * repository; this header only declares it and adds a few inline readers
 * for the columnar batch. No library to link: a plugin defines the exports
 * below and builds as a WASI reactor:
 *
 *   clang --target=wasm32-wasi -O2 -mexec-model=reactor -o NAME.wasm NAME.c
 *
 * (Debian: packages clang, lld and wasi-libc.) See
 * examples/plugins/amount-c/amount.c for a complete plugin.
 */
#ifndef SEGD_H
#define SEGD_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define SEGD_ABI_VERSION 0x00010001 /* major<<16 | minor: 1.1 */
#define SEGD_MAGIC 0x31424753u      /* "SGB1" */
#define SEGD_HEADER_SIZE 64

/* Batch kinds, and the bits of segd_kinds. */
#define SEGD_EVENTS 1
#define SEGD_PROFILES 2

/* Type tags of the types column. */
enum segd_type {
	SEGD_ABSENT = 0,
	SEGD_NULL = 1,
	SEGD_FALSE = 2,
	SEGD_TRUE = 3,
	SEGD_NUMBER = 4, /* value slot: float64 bits */
	SEGD_STRING = 5, /* value slot: string ref */
	SEGD_JSON = 6    /* value slot: string ref to the JSON text */
};

/* Log levels (log/slog's). */
#define SEGD_LOG_DEBUG (-4)
#define SEGD_LOG_INFO 0
#define SEGD_LOG_WARN 4
#define SEGD_LOG_ERROR 8

/* The batch header, at offset 0 of every batch (little-endian, as wasm32). */
typedef struct {
	uint32_t magic, version, kind, n;
	int64_t now; /* host clock, Unix ms */
	uint32_t k, total;
	uint32_t users, names, times, keys, types, values, heap, heap_len;
} segd_header;

/* A string reference: offset from the batch start, and length (not
 * NUL-terminated). */
typedef struct {
	uint32_t off, len;
} segd_ref;

/* The host's import: log len bytes at ptr. */
__attribute__((import_module("segd"), import_name("log"))) void segd_log(int32_t level, const char *ptr, int32_t len);

/* The exports a plugin defines (all required; segd_props is optional in the
 * ABI but declared here for completeness: define it to return 0 for "send
 * every property"). Pointers are offsets into the exported memory. */
#define SEGD_EXPORT(name) __attribute__((export_name(#name)))
SEGD_EXPORT(segd_abi_version) int32_t segd_abi_version(void);
SEGD_EXPORT(segd_kinds) int32_t segd_kinds(void);
SEGD_EXPORT(segd_alloc) void *segd_alloc(int32_t size);
SEGD_EXPORT(segd_init) int32_t segd_init(const char *params, int32_t len);
SEGD_EXPORT(segd_match) int32_t segd_match(const uint8_t *batch, int32_t len, uint64_t *out);
SEGD_EXPORT(segd_error) int64_t segd_error(void);
SEGD_EXPORT(segd_props) int64_t segd_props(void);

/* segd_pack makes the ptr<<32 | len answer of segd_error and segd_props. */
static inline int64_t segd_pack(const void *ptr, uint32_t len) {
	return (int64_t)((uint64_t)(uintptr_t)ptr << 32 | len);
}

/* segd_check validates a batch's header and column bounds (0 if good). */
static inline int segd_check(const uint8_t *b, uint32_t len) {
	const segd_header *h = (const segd_header *)b;
	if (len < SEGD_HEADER_SIZE || h->magic != SEGD_MAGIC || h->version >> 16 != SEGD_ABI_VERSION >> 16 || h->total != len)
		return -1;
	uint64_t n = h->n, k = h->k;
	const struct { uint32_t off; uint64_t size; } cols[] = {
		{h->users, 8 * n}, {h->names, 8 * n}, {h->times, 8 * n}, {h->keys, 8 * k},
		{h->types, k * n}, {h->values, 8 * k * n}, {h->heap, h->heap_len},
	};
	for (size_t i = 0; i < sizeof cols / sizeof cols[0]; i++)
		if (cols[i].off < SEGD_HEADER_SIZE || cols[i].off + cols[i].size > len)
			return -1;
	return 0;
}

/* segd_key returns the index of property name in the batch's key table, or
 * -1 when no item has it. Look keys up once per batch. */
static inline int32_t segd_key(const uint8_t *b, const char *name) {
	const segd_header *h = (const segd_header *)b;
	const segd_ref *keys = (const segd_ref *)(b + h->keys);
	size_t l = strlen(name);
	for (uint32_t j = 0; j < h->k; j++)
		if (keys[j].len == l && (uint64_t)keys[j].off + l <= h->total && memcmp(b + keys[j].off, name, l) == 0)
			return (int32_t)j;
	return -1;
}

/* segd_type_of: the type of key j (from segd_key) for item i. */
static inline enum segd_type segd_type_of(const uint8_t *b, int32_t j, uint32_t i) {
	const segd_header *h = (const segd_header *)b;
	return j < 0 ? SEGD_ABSENT : (enum segd_type)b[h->types + (uint32_t)j * h->n + i];
}

/* segd_num: the value of key j for item i as a number; only meaningful
 * when segd_type_of says SEGD_NUMBER. */
static inline double segd_num(const uint8_t *b, int32_t j, uint32_t i) {
	const segd_header *h = (const segd_header *)b;
	return ((const double *)(b + h->values))[(uint32_t)j * h->n + i];
}

/* segd_str: the string ref of key j for item i (SEGD_STRING or SEGD_JSON). */
static inline segd_ref segd_str(const uint8_t *b, int32_t j, uint32_t i) {
	const segd_header *h = (const segd_header *)b;
	return ((const segd_ref *)(b + h->values))[(uint32_t)j * h->n + i];
}

/* segd_set marks item i as matching in the answer. */
static inline void segd_set(uint64_t *out, uint32_t i) { out[i >> 6] |= (uint64_t)1 << (i & 63); }

#endif
