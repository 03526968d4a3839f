/*
 * FKB from C: runs timing jobs through the installed C API (<fkb/fkb.h>, FKB::fkb).
 *
 * Usage: bench_fkb_c JOBFILE BUDGET_S MIN_SAMPLES MAX_SAMPLES BLOCK_TARGET_S
 * (JOBFILE - reads the jobs from stdin, answering each as it comes.)
 * Job lines (paths without blanks):
 *   predict LABEL MODEL.fkb DTYPE BATCH   fkb_network_predict (32) / _predict_f64 (64) on a
 *                                         (BATCH, n_in) row-major array
 *   train   LABEL MODEL.fkb 32 BATCH      fkb_network_train_on_batch (Adam, MSE; compiled
 *                                         once per model) on fixed random x, y in [-1, 1]
 *   load    LABEL MODEL.fkb               fkb_network_load + fkb_network_free
 *   check   LABEL MODEL.fkb DTYPE BATCH X.bin Y.bin
 *                                         not timed: x (BATCH, n_in) read raw from X.bin, the
 *                                         predict call's y (BATCH, n_out) written raw to Y.bin
 * Shaped models ((steps, channels) inputs: Conv1D, LSTM) take the same flat rows: each sample
 * is its n_in = fkb_network_n_inputs values in C order of its shape.
 * Prints `result LABEL SECONDS_PER_CALL SAMPLES CALLS_PER_SAMPLE`, with the timing protocol of
 * fortran/bench_timer.f90 (warm-up, blocks of calls, median over blocks).
 */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <fkb/fkb.h>

static fkb_network *net = NULL;
static char net_path[2048] = "";
static char load_path[2048] = "";
static int cur_dtype = 32;
static int64_t cur_batch = 1;
static float *x32 = NULL, *y32 = NULL;
static double *x64 = NULL, *y64 = NULL;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void check(fkb_status st, const char *what) {
    if (st != FKB_OK) {
        printf("error: %s failed: %s: %s\n", what, fkb_status_string(st), fkb_last_error());
        exit(1);
    }
}

static void work_predict(void) {
    if (cur_dtype == 32)
        check(fkb_network_predict(net, x32, cur_batch, y32), "predict");
    else
        check(fkb_network_predict_f64(net, x64, cur_batch, y64), "predict_f64");
}

static void work_train(void) {
    double loss;
    check(fkb_network_train_on_batch(net, x64, y64, cur_batch, NULL, &loss), "train_on_batch");
}

static void work_load(void) {
    fkb_network *tmp = NULL;
    check(fkb_network_load(load_path, &tmp), "load");
    fkb_network_free(&tmp);
}

static int cmp_double(const void *a, const void *b) {
    double da = *(const double *)a, db = *(const double *)b;
    return (da > db) - (da < db);
}

static double measure(void (*work)(void), double budget, int min_samples, int max_samples,
                      double block_target, int *n_out, long *k_out) {
    /* The process's first measurement warms up for 0.25 s: a freshly started OpenMP pool can
     * share one core with the main thread for its first ~0.1 s (measured: 7 calls of 16 ms
     * each of the wide model at batch 1 on 2 threads, then 60 us). */
    static int warmed = 0;
    for (double w0 = now(); !warmed && now() - w0 < 0.25;) work();
    warmed = 1;
    work();
    work();
    double t0 = now();
    work();
    double t1 = now() - t0;
    double kk = block_target / (t1 > 1e-9 ? t1 : 1e-9);
    long k = kk < 1.0 ? 1 : (kk > 1e7 ? 10000000L : (long)kk);
    if (max_samples < 1) max_samples = 1;
    double *s = malloc(sizeof(double) * (size_t)max_samples);
    int n = 0;
    double start = now();
    for (;;) {
        t0 = now();
        for (long i = 0; i < k; ++i) work();
        s[n++] = (now() - t0) / (double)k;
        if (n >= max_samples) break;
        if (n >= min_samples && now() - start >= budget) break;
    }
    qsort(s, (size_t)n, sizeof(double), cmp_double);
    double med = (n % 2) ? s[n / 2] : 0.5 * (s[n / 2 - 1] + s[n / 2]);
    free(s);
    *n_out = n;
    *k_out = k;
    return med;
}

int main(int argc, char **argv) {
    if (argc != 6) {
        fprintf(stderr, "usage: bench_fkb_c JOBFILE BUDGET_S MIN_SAMPLES MAX_SAMPLES BLOCK_TARGET_S\n");
        return 2;
    }
    double budget = atof(argv[2]), block_target = atof(argv[5]);
    int min_samples = atoi(argv[3]), max_samples = atoi(argv[4]);
    /* JOBFILE "-": jobs from stdin, answered one by one (paired.py keeps the process alive) */
    FILE *f = strcmp(argv[1], "-") == 0 ? stdin : fopen(argv[1], "r");
    if (!f) {
        perror(argv[1]);
        return 2;
    }
    char line[8192], kind[64], label[256], path[2048], xpath[2048], ypath[2048];
    double sink = 0.0;
    while (fgets(line, sizeof line, f)) {
        int dtype = 32;
        long long batch = 1;
        int nf = sscanf(line, "%63s %255s %2047s %d %lld %2047s %2047s", kind, label, path, &dtype,
                        &batch, xpath, ypath);
        if (nf <= 0) continue;
        double med;
        int n;
        long k;
        if (strcmp(kind, "check") == 0 && nf == 7) {
            if (strcmp(path, net_path) != 0) {
                fkb_network_free(&net);
                check(fkb_network_load(path, &net), path);
                snprintf(net_path, sizeof net_path, "%s", path);
            }
            int64_t ni = fkb_network_n_inputs(net), no = fkb_network_n_outputs(net);
            size_t es = dtype == 32 ? sizeof(float) : sizeof(double);
            void *x = malloc(es * (size_t)(ni * batch)), *y = calloc((size_t)(no * batch), es);
            FILE *fx = fopen(xpath, "rb");
            if (!fx || fread(x, es, (size_t)(ni * batch), fx) != (size_t)(ni * batch)) {
                printf("error: cannot read %s\n", xpath);
                return 1;
            }
            fclose(fx);
            if (dtype == 32)
                check(fkb_network_predict(net, x, batch, y), "predict");
            else
                check(fkb_network_predict_f64(net, x, batch, y), "predict_f64");
            FILE *fy = fopen(ypath, "wb");
            if (!fy || fwrite(y, es, (size_t)(no * batch), fy) != (size_t)(no * batch)) {
                printf("error: cannot write %s\n", ypath);
                return 1;
            }
            fclose(fy);
            free(x);
            free(y);
            printf("checked %s\n", label);
            fflush(stdout);
            continue;
        } else if (strcmp(kind, "predict") == 0 && nf >= 5) {
            if (strcmp(path, net_path) != 0) {
                fkb_network_free(&net);
                check(fkb_network_load(path, &net), path);
                snprintf(net_path, sizeof net_path, "%s", path);
            }
            int64_t ni = fkb_network_n_inputs(net), no = fkb_network_n_outputs(net);
            free(x32); free(y32); free(x64); free(y64);
            x32 = NULL; y32 = NULL; x64 = NULL; y64 = NULL;
            cur_dtype = dtype;
            cur_batch = batch;
            srand(12345);
            if (dtype == 32) {
                x32 = malloc(sizeof(float) * (size_t)(ni * batch));
                y32 = calloc((size_t)(no * batch), sizeof(float));
                for (int64_t i = 0; i < ni * batch; ++i) x32[i] = 2.0f * (float)rand() / (float)RAND_MAX - 1.0f;
            } else {
                x64 = malloc(sizeof(double) * (size_t)(ni * batch));
                y64 = calloc((size_t)(no * batch), sizeof(double));
                for (int64_t i = 0; i < ni * batch; ++i) x64[i] = 2.0 * (double)rand() / (double)RAND_MAX - 1.0;
            }
            med = measure(work_predict, budget, min_samples, max_samples, block_target, &n, &k);
            sink += dtype == 32 ? (double)y32[0] : y64[0];
        } else if (strcmp(kind, "train") == 0 && nf >= 5) {
            /* (a fresh copy each time: a network trained by an earlier job has moved on) */
            fkb_network_free(&net);
            check(fkb_network_load(path, &net), path);
            snprintf(net_path, sizeof net_path, "%s#trained", path);
            check(fkb_network_compile(net, "adam", "mse"), "compile");
            int64_t ni = fkb_network_n_inputs(net), no = fkb_network_n_outputs(net);
            free(x32); free(y32); free(x64); free(y64);
            x32 = NULL; y32 = NULL;
            cur_batch = batch;
            srand(12345);
            x64 = malloc(sizeof(double) * (size_t)(ni * batch));
            y64 = malloc(sizeof(double) * (size_t)(no * batch));
            for (int64_t i = 0; i < ni * batch; ++i) x64[i] = 2.0 * (double)rand() / (double)RAND_MAX - 1.0;
            for (int64_t i = 0; i < no * batch; ++i) y64[i] = 2.0 * (double)rand() / (double)RAND_MAX - 1.0;
            med = measure(work_train, budget, min_samples, max_samples, block_target, &n, &k);
        } else if (strcmp(kind, "load") == 0 && nf >= 3) {
            snprintf(load_path, sizeof load_path, "%s", path);
            med = measure(work_load, budget, min_samples, max_samples, block_target, &n, &k);
        } else {
            printf("error: bad job line: %s", line);
            return 1;
        }
        printf("result %s %.9e %d %ld\n", label, med, n, k);
        fflush(stdout);
    }
    if (f != stdin) fclose(f);
    fkb_network_free(&net);
    if (isnan(sink)) printf("NaN\n");
    return 0;
}
