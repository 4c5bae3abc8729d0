/* Data-parallel runs over MPI: `mpirun -np N vkaccum seg train ...` starts N processes
 * (ranks), each with its own Vulkan device, each running its share of every window.
 *
 * The one collective a window needs is the sum of the ranks' exact gradient accumulators
 * (src/exact.h): integers, so the sum is the same whatever the number of ranks and the
 * order MPI combines them in, which is what makes N ranks give the bits of one process.
 * The other collectives are small: the stop decision and sample counts at a boundary.
 *
 * MPI is initialised only when the process was started by an MPI launcher (mpirun sets
 * OMPI_COMM_WORLD_SIZE, PMI_SIZE or PMIX_RANK); otherwise, and in a build without MPI
 * (meson -Dmpi=disabled, or no libopenmpi-dev), vkaccum is rank 0 of 1 and every
 * collective is the identity.
 *
 * Failures: a rank that fails calls vka_dist_abort, which names it and ends every rank
 * (MPI_Abort); a rank killed from outside is noticed by mpirun, which ends the others.
 *
 * Owner: process-wide state (MPI is), set up by main through vka_dist_init. */
#ifndef VKA_DIST_H
#define VKA_DIST_H

#include <stdbool.h>
#include <stdint.h>

struct vka_dist {
    int rank, size;             /* this process among all */
    int local_rank, local_size; /* among the ranks of this machine */
    bool mpi;                   /* MPI is initialised (size may still be 1) */
};

/* Initialises MPI when launched by mpirun (a failure to do so is an error); 0 or a
 * negative errno after vka_err. */
int vka_dist_init(int *argc, char ***argv);
/* Finalises MPI after a successful run (collective: every rank calls it). */
void vka_dist_finalize(void);
/* This process's place: rank 0 of 1 before vka_dist_init or without MPI. */
const struct vka_dist *vka_dist(void);
/* Whether this build has MPI, and its library's version ("" without). */
bool vka_dist_built(void);
const char *vka_dist_library(void);

/* Ends every rank with status code, after printing "vkaccum: rank R of N: failed (exit
 * status code), ending all ranks" and msg when not NULL. Returns only without MPI. */
void vka_dist_abort(int code, const char *msg);

/* In place, over all ranks: the exact elements' sum (4 words each, vka_exact_add). */
int vka_dist_sum_exact(uint32_t *words, uint64_t nelems);
/* In place, over all ranks: sums of n unsigned integers, and their maximum. */
int vka_dist_sum_u64(uint64_t *v, uint32_t n);
int vka_dist_max_u64(uint64_t *v, uint32_t n);

#endif
