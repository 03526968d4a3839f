/* Every call into FKB returns with the upper halves of the vector registers clean (x86-64).
 *
 * FKB's kernels use AVX-512/AVX2; the code around them (the host's, libgfortran's, parts of
 * FKB built for any x86-64) may use legacy SSE instructions. Running those while the upper
 * state is dirty costs about 250 ns each time on some Intel CPUs (measured on a Xeon, family
 * 6 model 207, in a KVM guest: a tiny network's predict took 1.0 us instead of 0.4). The
 * compiler clears the state before most returns, not all (src/cpu/gemm_body.h, `leave`).
 * XGETBV with ECX = 1 reads which state components are in use: bit 2 (YMM_Hi128) and bit 6
 * (ZMM_Hi256) must be clear after each call, as they are before it (VZEROUPPER).
 * Exits 77 (skipped) where the CPU cannot say (no AVX or no XGETBV ECX = 1). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "fkb/fkb.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>

static int n_pass = 0, n_fail = 0;

static int supported(void)
{
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    if (!(c & (1u << 27)) || !(c & (1u << 28))) return 0;  /* OSXSAVE, AVX */
    if (__get_cpuid_max(0, 0) < 0xd) return 0;
    __cpuid_count(0xd, 1, a, b, c, d);
    return (a >> 2) & 1;                                     /* XGETBV with ECX = 1 */
}

static inline void clean(void) { __asm__ volatile("vzeroupper" ::: "memory"); }

static inline unsigned long long dirty(void)
{
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(1));
    return (((unsigned long long)hi << 32) | lo) & 0x44u;    /* YMM_Hi128, ZMM_Hi256 */
}

static void expect_clean(fkb_status st, unsigned long long bits, const char *what,
                         const char *name, int64_t batch)
{
    if (st != FKB_OK) {
        n_fail++;
        printf("FAIL: %s %s batch %lld: %s\n", what, name, (long long)batch, fkb_last_error());
    } else if (bits == 0) {
        n_pass++;
    } else {
        n_fail++;
        printf("FAIL: %s %s batch %lld returns with the upper vector state in use (0x%llx)\n",
               what, name, (long long)batch, bits);
    }
}

static void run(const char *dir, const char *name)
{
    static const int64_t batches[] = {1, 2, 5, 13, 24, 333};
    enum { MAX_IO = 4 };
    char path[2048];
    fkb_network *net = NULL;
    snprintf(path, sizeof path, "%s/%s.fkb", dir, name);
    if (fkb_network_load(path, &net) != FKB_OK) {
        printf("FAIL: load %s: %s\n", name, fkb_last_error());
        n_fail++;
        return;
    }
    const int n_in = fkb_network_input_count(net), n_out = fkb_network_output_count(net);
    if (n_in > MAX_IO || n_out > MAX_IO) {
        printf("FAIL: %s has more than %d inputs or outputs\n", name, MAX_IO);
        n_fail++;
        fkb_network_free(&net);
        return;
    }
    for (size_t b = 0; b < sizeof batches / sizeof batches[0]; b++) {
        const int64_t batch = batches[b];
        float *xf[MAX_IO], *yf[MAX_IO];
        double *xd[MAX_IO], *yd[MAX_IO];
        unsigned long long bits;
        fkb_status st;
        double loss;
        for (int k = 0; k < n_in; k++) {
            const int64_t n = batch * fkb_network_input_size(net, k);
            xf[k] = calloc((size_t)n, sizeof **xf);
            xd[k] = calloc((size_t)n, sizeof **xd);
            for (int64_t i = 0; i < n; i++) xf[k][i] = (float)(xd[k][i] = 0.01 * (double)(i % 97));
        }
        for (int k = 0; k < n_out; k++) {
            const int64_t n = batch * fkb_network_output_size(net, k);
            yf[k] = calloc((size_t)n, sizeof **yf);
            yd[k] = calloc((size_t)n, sizeof **yd);
        }
        clean();
        st = fkb_network_predict_multi(net, n_in, (const float *const *)xf, batch, n_out, yf, NULL);
        bits = dirty();
        expect_clean(st, bits, "predict (float)", name, batch);
        clean();
        st = fkb_network_predict_multi_f64(net, n_in, (const double *const *)xd, batch, n_out, yd,
                                           NULL);
        bits = dirty();
        expect_clean(st, bits, "predict (double)", name, batch);
        /* training: forward, the two backward products (dz x^T, W^T dz) and the optimizer */
        if (n_in == 1 && n_out == 1 && fkb_network_compile(net, "adam", "mse") == FKB_OK) {
            clean();
            st = fkb_network_train_on_batch(net, xd[0], yd[0], batch, NULL, &loss);
            bits = dirty();
            expect_clean(st, bits, "train_on_batch", name, batch);
        }
        for (int k = 0; k < n_in; k++) { free(xf[k]); free(xd[k]); }
        for (int k = 0; k < n_out; k++) { free(yf[k]); free(yd[k]); }
    }
    fkb_network_free(&net);
}

int main(int argc, char **argv)
{
    static const char *names[] = {"spcam_like_float32", "spcam_like_float64",
                                  "dense_leaky_relu_float32", "dense_softmax_float64",
                                  "residual_mlp_float32", "layer_normalization_float32",
                                  "conv1d_column_float32", "lstm_float32", "gru_float64",
                                  "merge_graph_float32"};
    if (argc < 2) return 2;
    if (!supported()) {
        printf("skipped: this CPU has no AVX or cannot report the vector state in use\n");
        return 77;
    }
    for (size_t k = 0; k < sizeof names / sizeof names[0]; k++) run(argv[1], names[k]);
    printf("%d passed, %d failed\n", n_pass, n_fail);
    return n_fail == 0 ? 0 : 1;
}
#else
int main(void)
{
    printf("skipped: not an x86-64 build\n");
    return 77;
}
#endif
