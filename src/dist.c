/* Data-parallel runs over MPI; see dist.h. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>

#include "dist.h"
#include "exact.h"
#include "log.h"
#include "vka_config.h"

#if VKA_HAVE_MPI
#include <mpi.h>
#endif

static struct vka_dist self = { .rank = 0, .size = 1, .local_rank = 0, .local_size = 1 };

const struct vka_dist *vka_dist(void)
{
    return &self;
}

bool vka_dist_built(void)
{
    return VKA_HAVE_MPI;
}

#if VKA_HAVE_MPI

static MPI_Datatype exact_type = MPI_DATATYPE_NULL;
static MPI_Op exact_op = MPI_OP_NULL;

/* MPI's reduction callback: inout[i] = in[i] + inout[i], element by element. */
static void exact_sum_op(void *in, void *inout, int *len, MPI_Datatype *type)
{
    (void)type;
    vka_exact_add(inout, in, (uint64_t)*len);
}

/* Whether an MPI launcher started this process. */
static bool launched(void)
{
    return getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMI_SIZE") || getenv("PMIX_RANK");
}

static int mpi_check(int rc, const char *what)
{
    if (rc == MPI_SUCCESS)
        return 0;
    char msg[MPI_MAX_ERROR_STRING] = "";
    int len = 0;
    MPI_Error_string(rc, msg, &len);
    vka_err("MPI: %s failed: %s", what, msg);
    return -EIO;
}

int vka_dist_init(int *argc, char ***argv)
{
    if (!launched())
        return 0;
    int rc = MPI_Init(argc, argv);
    if (rc != MPI_SUCCESS) {
        vka_err("MPI: MPI_Init failed (error %d)", rc);
        return -EIO;
    }
    self.mpi = true;
    /* errors come back as return codes, so that a rank says what failed before ending */
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_rank(MPI_COMM_WORLD, &self.rank);
    MPI_Comm_size(MPI_COMM_WORLD, &self.size);
    MPI_Comm local;
    int ret = mpi_check(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, self.rank,
                                            MPI_INFO_NULL, &local), "splitting by machine");
    if (ret == 0) {
        MPI_Comm_rank(local, &self.local_rank);
        MPI_Comm_size(local, &self.local_size);
        MPI_Comm_free(&local);
    }
    if (ret == 0)
        ret = mpi_check(MPI_Type_contiguous(4, MPI_UINT32_T, &exact_type), "a type");
    if (ret == 0)
        ret = mpi_check(MPI_Type_commit(&exact_type), "a type");
    if (ret == 0)
        ret = mpi_check(MPI_Op_create(exact_sum_op, 1, &exact_op), "an operation");
    if (ret == 0 && self.size > 1) {
        static char tag[32];
        snprintf(tag, sizeof(tag), "rank %d", self.rank);
        vka_log_set_tag(tag);
    }
    return ret;
}

void vka_dist_finalize(void)
{
    if (!self.mpi)
        return;
    if (exact_op != MPI_OP_NULL)
        MPI_Op_free(&exact_op);
    if (exact_type != MPI_DATATYPE_NULL)
        MPI_Type_free(&exact_type);
    MPI_Finalize();
    self.mpi = false;
}

const char *vka_dist_library(void)
{
    static char v[MPI_MAX_LIBRARY_VERSION_STRING];
    int len = 0;
    if (!v[0]) {
        MPI_Get_library_version(v, &len);
        /* the first line: "Open MPI v4.1.4, package: ..." -> up to the comma */
        for (int i = 0; v[i]; i++)
            if (v[i] == ',' || v[i] == '\n') {
                v[i] = '\0';
                break;
            }
    }
    return v;
}

void vka_dist_abort(int code, const char *msg)
{
    if (!self.mpi || self.size < 2)
        return;
    fprintf(stderr, "vkaccum: rank %d of %d: failed (exit status %d)%s%s; ending all ranks\n",
            self.rank, self.size, code, msg ? ": " : "", msg ? msg : "");
    fflush(stderr);
    fflush(stdout);
    MPI_Abort(MPI_COMM_WORLD, code);
}

int vka_dist_sum_exact(uint32_t *words, uint64_t nelems)
{
    if (!self.mpi || self.size < 2)
        return 0;
    for (uint64_t first = 0; first < nelems; first += INT_MAX / 4) {
        uint64_t n = nelems - first < INT_MAX / 4 ? nelems - first : INT_MAX / 4;
        int ret = mpi_check(MPI_Allreduce(MPI_IN_PLACE, words + 4 * first, (int)n, exact_type,
                                          exact_op, MPI_COMM_WORLD),
                            "summing the gradient accumulators");
        if (ret < 0)
            return ret;
    }
    return 0;
}

static int reduce_u64(uint64_t *v, uint32_t n, MPI_Op op, const char *what)
{
    if (!self.mpi || self.size < 2)
        return 0;
    return mpi_check(MPI_Allreduce(MPI_IN_PLACE, v, (int)n, MPI_UINT64_T, op, MPI_COMM_WORLD),
                     what);
}

int vka_dist_sum_u64(uint64_t *v, uint32_t n)
{
    return reduce_u64(v, n, MPI_SUM, "a sum of counts");
}

int vka_dist_max_u64(uint64_t *v, uint32_t n)
{
    return reduce_u64(v, n, MPI_MAX, "a maximum");
}

#else /* without MPI: one process */

int vka_dist_init(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    return 0;
}

void vka_dist_finalize(void)
{
}

const char *vka_dist_library(void)
{
    return "";
}

void vka_dist_abort(int code, const char *msg)
{
    (void)code;
    (void)msg;
}

int vka_dist_sum_exact(uint32_t *words, uint64_t nelems)
{
    (void)words;
    (void)nelems;
    return 0;
}

int vka_dist_sum_u64(uint64_t *v, uint32_t n)
{
    (void)v;
    (void)n;
    return 0;
}

int vka_dist_max_u64(uint64_t *v, uint32_t n)
{
    (void)v;
    (void)n;
    return 0;
}

#endif
