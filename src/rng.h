/* splitmix64, the one seeded mixer of vkaccum: as a counter hash (vka_mix64: a sample's
 * randomness from its seed and index alone, whatever the order it is made in) and as a
 * stream (vka_rng_next). Initialisation, data order, augmentation and GAN noise all
 * draw from it, so a change here changes every trained bit. */
#ifndef VKA_RNG_H
#define VKA_RNG_H

#include <stdint.h>

#define VKA_GOLDEN_GAMMA 0x9e3779b97f4a7c15ull

static inline uint64_t vka_mix64(uint64_t z)
{
    z += VKA_GOLDEN_GAMMA;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* The next value of the stream whose state is *s (splitmix64: the state advances by the
 * golden gamma and the new state is mixed). */
static inline uint64_t vka_rng_next(uint64_t *s)
{
    uint64_t z = *s;
    *s += VKA_GOLDEN_GAMMA;
    return vka_mix64(z);
}

#endif
