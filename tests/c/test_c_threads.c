/* The concurrency contract of the C API: 8 POSIX threads make thousands of mixed-size predict
 * calls on ONE network and ONE ensemble at once; every result must equal, bit for bit, the
 * serial result for the same batch. Run plainly and under ThreadSanitizer (tests/sanitize). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fkb/fkb.h"

#define N_THREADS 8
#define CALLS 400
#define MAX_BATCH 48
static const int64_t sizes[] = {1, 2, 5, 16, 48};
#define N_SIZES 5

static fkb_network *net;
static fkb_ensemble *ens;
static int64_t n_in, n_out;
static double *x, *serial_net[N_SIZES], *serial_ens[N_SIZES];

static void *worker(void *arg)
{
    long id = (long)arg, bad = 0;
    double *y = malloc(MAX_BATCH * (size_t)n_out * sizeof *y);
    for (int c = 0; c < CALLS; c++) {
        int k = (int)((id * 7 + c) % N_SIZES);
        size_t count = (size_t)(sizes[k] * n_out);
        if (c % 2 == 0) {
            if (fkb_network_predict_f64(net, x, sizes[k], y) != FKB_OK ||
                memcmp(y, serial_net[k], count * sizeof *y) != 0)
                bad++;
        } else {
            if (fkb_ensemble_predict(ens, x, sizes[k], y, NULL, NULL, NULL) != FKB_OK ||
                memcmp(y, serial_ens[k], count * sizeof *y) != 0)
                bad++;
        }
    }
    free(y);
    return (void *)bad;
}

int main(int argc, char **argv)
{
    if (argc < 2) return 2;
    char p1[2048], p2[2048], p3[2048];
    snprintf(p1, sizeof p1, "%s/spcam_like_float32.fkb", argv[1]);
    snprintf(p2, sizeof p2, "%s/spcam_like_float64.fkb", argv[1]);
    snprintf(p3, sizeof p3, "%s/spcam_like_float32.fkb", argv[1]);
    const char *members[3] = {p1, p2, p3};
    if (fkb_network_load(p1, &net) != FKB_OK || fkb_ensemble_load(members, 3, NULL, &ens) != FKB_OK) {
        printf("load failed: %s\n", fkb_last_error());
        return 1;
    }
    double std = 0.05;
    fkb_ensemble_set_noise(ens, &std, 1, 2, 11);
    n_in = fkb_network_n_inputs(net);
    n_out = fkb_network_n_outputs(net);
    x = malloc(MAX_BATCH * (size_t)n_in * sizeof *x);
    for (int64_t i = 0; i < MAX_BATCH * n_in; i++) x[i] = (double)((i * 37) % 101) / 50.0 - 1.0;
    for (int k = 0; k < N_SIZES; k++) {
        serial_net[k] = malloc((size_t)(sizes[k] * n_out) * sizeof(double));
        serial_ens[k] = malloc((size_t)(sizes[k] * n_out) * sizeof(double));
        fkb_network_predict_f64(net, x, sizes[k], serial_net[k]);
        fkb_ensemble_predict(ens, x, sizes[k], serial_ens[k], NULL, NULL, NULL);
    }
    pthread_t t[N_THREADS];
    for (long i = 0; i < N_THREADS; i++) pthread_create(&t[i], NULL, worker, (void *)i);
    long bad = 0;
    for (int i = 0; i < N_THREADS; i++) {
        void *r;
        pthread_join(t[i], &r);
        bad += (long)r;
    }
    int pass = bad == 0;
    printf("%s: %d threads x %d mixed calls on one network and one ensemble, %ld mismatches\n",
           pass ? "ok" : "FAIL", N_THREADS, CALLS, bad);
    printf("%d passed, %d failed\n", pass, !pass);
    fkb_network_free(&net);
    fkb_ensemble_free(&ens);
    for (int k = 0; k < N_SIZES; k++) {
        free(serial_net[k]);
        free(serial_ens[k]);
    }
    free(x);
    return pass ? 0 : 1;
}
