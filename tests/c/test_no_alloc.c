/* A steady-state predict allocates nothing: after a warm-up call of the same batch size, 100
 * more calls (float and double host arrays, the network's own precision and the other) make
 * no call at all to the allocator. The test binary defines malloc & co. itself (the dynamic
 * linker then binds libfkb's and libgfortran's calls to these: alloc_counter.c). Counting
 * calls, not the heap's size, also catches memory allocated and freed within one predict
 * (heap statistics do not change then: the C API's predict made 14 such calls before
 * 2026-12-06 and an earlier form of this test passed). FKB_TEST_NO_WARMUP=1 skips the warm-up, to see the test catch the first
 * call's workspace allocation. */
#include <stdio.h>
#include <stdlib.h>

#include "fkb/fkb.h"

#include "alloc_counter.h"

static int n_pass = 0, n_fail = 0;

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
    int ok = 1;
    if (getenv("FKB_TEST_NO_WARMUP") == NULL) {  /* sizes the workspace once */
        ok &= fkb_network_predict(net, xf, batch, yf) == FKB_OK;
        ok &= fkb_network_predict_f64(net, xd, batch, yd) == FKB_OK;
    }
    fkb_test_alloc_start();
    for (int i = 0; i < 100; i++) {
        ok &= fkb_network_predict(net, xf, batch, yf) == FKB_OK;
        ok &= fkb_network_predict_f64(net, xd, batch, yd) == FKB_OK;
    }
    long n_calls = fkb_test_alloc_stop();
    if (ok && n_calls == 0) {
        n_pass++;
    } else {
        n_fail++;
        printf("FAIL: %s batch %lld: %ld allocator calls in 200 predicts%s\n", name,
               (long long)batch, n_calls, ok ? "" : " (and a predict failed)");
    }
    free(xf); free(yf); free(xd); free(yd);
    fkb_network_free(&net);
}

int main(int argc, char **argv)
{
    if (argc < 2) return 2;
    if (!fkb_test_alloc_supported()) {
        printf("skipped: the allocator hook needs glibc\n");
        return 77;
    }
    /* the hook itself must see the library's calls, or a zero proves nothing */
    fkb_network *probe = NULL;
    char path[2048];
    snprintf(path, sizeof path, "%s/spcam_like_float32.fkb", argv[1]);
    fkb_test_alloc_start();
    int st = fkb_network_load(path, &probe);
    long n_calls = fkb_test_alloc_stop();
    if (st != FKB_OK || n_calls == 0) {
        printf("FAIL: the allocator hook saw %ld calls while loading a network (status %d)\n",
               n_calls, st);
        return 1;
    }
    fkb_network_free(&probe);
    const char *names[] = {"spcam_like_float32", "spcam_like_float64", "layer_normalization_float32",
                           "batch_normalization_float64", "dense_softmax_float32", "prelu_float64"};
    for (int k = 0; k < 6; k++) {
        run(argv[1], names[k], 1);
        run(argv[1], names[k], 333);
        run(argv[1], names[k], 1000);
    }
    printf("%d passed, %d failed\n", n_pass, n_fail);
    return n_fail == 0 ? 0 : 1;
}
