/* vkaccum bench: the options its one table parses (bench.c) and the training benchmark
 * (bench_train.c: bench train and bench workloads). */
#ifndef VKA_CLI_BENCH_H
#define VKA_CLI_BENCH_H

#include <stdbool.h>

struct bench_opts {
    char device[128];
    int repeats;
    bool json;
    /* train: -1 takes the workload's value */
    char workload[32];
    int micro; /* 0: auto */
    int steps, warmup, batch, size;
    bool profile, profile_layers;
    char accumulate[8]; /* "" or ordered: --accumulate ordered; exact */
};

/* bench train: one workload of tools/bench/workloads.json timed end to end; bench
 * workloads: their definitions. Exit statuses. */
int bench_train(const struct bench_opts *o);
int bench_workloads(const struct bench_opts *o);

#endif
