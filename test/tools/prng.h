/*
 * prng.h -- the small deterministic PRNG shared by anomstream's test tools.
 *
 * splitmix64 (Steele, Lea, Flood 2014), written from its published
 * definition: a 64-bit counter advanced by a fixed odd constant and passed
 * through a bijective mixer.  Invariants: output depends only on the state,
 * never on the platform, libc or time, so "same seed, same bytes" holds for
 * every tool that draws from it.  Not for cryptography.
 */
#ifndef ANOMSTREAM_PRNG_H
#define ANOMSTREAM_PRNG_H

#include <stdint.h>

typedef struct prng { uint64_t s; } prng_t;

/* The mixer alone: a good 64-bit hash of x. */
static inline uint64_t
mix64(uint64_t x)
{
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ULL;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebULL;
	x ^= x >> 31;
	return x;
}

/* Hash of a list of small keys, order-sensitive. */
static inline uint64_t
hash3(uint64_t a, uint64_t b, uint64_t c)
{
	return mix64(mix64(mix64(a + 0x9e3779b97f4a7c15ULL) ^ b) ^ (c * 0x9e3779b97f4a7c15ULL));
}

static inline void
prng_seed(prng_t *p, uint64_t seed)
{
	p->s = mix64(seed ^ 0x5851f42d4c957f2dULL);
}

static inline uint64_t
prng_next(prng_t *p)
{
	p->s += 0x9e3779b97f4a7c15ULL;
	return mix64(p->s);
}

/* Uniform integer in [lo, hi], inclusive; hi >= lo.  Multiply-shift, bias
 * below 2^-32 for the small ranges used here. */
static inline int64_t
prng_range(prng_t *p, int64_t lo, int64_t hi)
{
	uint64_t span = (uint64_t) (hi - lo) + 1;
	uint64_t r = prng_next(p) >> 32;

	return lo + (int64_t) ((r * span) >> 32);
}

/* Uniform double in [0, 1). */
static inline double
prng_unit(prng_t *p)
{
	return (double) (prng_next(p) >> 11) * (1.0 / 9007199254740992.0);
}

#endif
