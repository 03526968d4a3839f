/* A steady-state predict allocates nothing (FKB_TEST_NO_WARMUP=1 skips the warm-up, to see
 * that the test does catch the first call's workspace allocation): after a warm-up call of the same batch size, the
 * heap (glibc's mallinfo2: bytes in use and number of chunks) is unchanged by 200 more calls,
 * for float and double host arrays of the network's own and of the other precision. */
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>

#include "fkb/fkb.h"

static int n_pass = 0, n_fail = 0;

static int heap_same(struct mallinfo2 a, struct mallinfo2 b)
{
    return a.uordblks == b.uordblks && a.hblkhd == b.hblkhd && a.hblks == b.hblks &&
           a.ordblks == b.ordblks;
}

static void run(const char *dir, const char *name, int64_t batch)
{
    char path[2048];
    snprintf(path, sizeof path, "%s/%s.fkb", dir, name);
    fkb_network *net = NULL;
    if (fkb_network_load(path, &net) != FKB_OK) {
        printf("FAIL: load %s: %s\n", name, fkb_last_error());
        n_fail++;
        return;
    }
    int64_t n_in = fkb_network_n_inputs(net), n_out = fkb_network_n_outputs(net);
    float *xf = calloc((size_t)(batch * n_in), sizeof *xf);
    float *yf = calloc((size_t)(batch * n_out), sizeof *yf);
    double *xd = calloc((size_t)(batch * n_in), sizeof *xd);
    double *yd = calloc((size_t)(batch * n_out), sizeof *yd);
    if (getenv("FKB_TEST_NO_WARMUP") == NULL) fkb_network_predict(net, xf, batch, yf); /* warm-up: sizes the workspace once */
    if (getenv("FKB_TEST_NO_WARMUP") == NULL) fkb_network_predict_f64(net, xd, batch, yd);
    struct mallinfo2 before = mallinfo2();
    for (int i = 0; i < 100; i++) {
        fkb_network_predict(net, xf, batch, yf);
        fkb_network_predict_f64(net, xd, batch, yd);
    }
    struct mallinfo2 after = mallinfo2();
    if (heap_same(before, after)) {
        n_pass++;
    } else {
        n_fail++;
        printf("FAIL: %s batch %lld: the heap changed (%zu -> %zu bytes in use)\n", name,
               (long long)batch, before.uordblks, after.uordblks);
    }
    free(xf); free(yf); free(xd); free(yd);
    fkb_network_free(&net);
}

int main(int argc, char **argv)
{
    if (argc < 2) return 2;
    const char *names[] = {"spcam_like_float32", "spcam_like_float64", "layer_normalization_float32",
                           "batch_normalization_float64", "dense_softmax_float32", "prelu_float64"};
    for (int k = 0; k < 6; k++) {
        run(argv[1], names[k], 1);
        run(argv[1], names[k], 333);
    }
    printf("%d passed, %d failed\n", n_pass, n_fail);
    return n_fail == 0 ? 0 : 1;
}
