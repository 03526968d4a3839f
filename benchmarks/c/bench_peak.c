/* The cores' floating-point peak: independent fused multiply-add chains held in registers
 * (no memory traffic), on every OpenMP thread at once. Prints "peak <dtype> <GFLOP/s>" for
 * float32 and float64 (all threads together), with AVX-512 where the CPU has it, else AVX2+FMA.
 * No result of FKB depends on this program; it gives the benchmark tables a physical ceiling. */
#include <immintrin.h>
#include <omp.h>
#include <stdio.h>
#include <time.h>

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

#define REP20(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11) X(12) X(13) \
    X(14) X(15) X(16) X(17) X(18) X(19)
#define REP10(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9)

/* 20 (AVX-512) or 10 (AVX2) chains: enough to cover the FMA latency on every current core. */
#define CHAINS(NAME, TGT, VEC, SET1, REP)                                      \
    __attribute__((target(TGT))) static double NAME(long iters)                            \
    {                                                                                       \
        const VEC m = SET1(0.999999), c = SET1(1e-7);                                       \
        REP(DECL_##VEC)                                                                     \
        for (long it = 0; it < iters; it++) { REP(STEP) }                                   \
        double s = 0;                                                                       \
        REP(SUM_##VEC)                                                                      \
        return s;                                                                           \
    }
#define STEP(i) a##i = FMA_OP(a##i, m, c);

#define DECL___m512(i) __m512 a##i = _mm512_set1_ps((float)(i));
#define SUM___m512(i) s += _mm512_reduce_add_ps(a##i);
#define FMA_OP(a, b, c) _Generic((a), __m512: _mm512_fmadd_ps, __m512d: _mm512_fmadd_pd, \
    __m256: _mm256_fmadd_ps, __m256d: _mm256_fmadd_pd)(a, b, c)
#define DECL___m512d(i) __m512d a##i = _mm512_set1_pd((double)(i));
#define SUM___m512d(i) s += _mm512_reduce_add_pd(a##i);
#define DECL___m256(i) __m256 a##i = _mm256_set1_ps((float)(i));
#define SUM___m256(i) { float t[8]; _mm256_storeu_ps(t, a##i); for (int q = 0; q < 8; q++) s += t[q]; }
#define DECL___m256d(i) __m256d a##i = _mm256_set1_pd((double)(i));
#define SUM___m256d(i) { double t[4]; _mm256_storeu_pd(t, a##i); for (int q = 0; q < 4; q++) s += t[q]; }

CHAINS(f32_512, "avx512f", __m512, _mm512_set1_ps, REP20)
CHAINS(f64_512, "avx512f", __m512d, _mm512_set1_pd, REP20)
CHAINS(f32_256, "avx2,fma", __m256, _mm256_set1_ps, REP10)
CHAINS(f64_256, "avx2,fma", __m256d, _mm256_set1_pd, REP10)

int main(void)
{
    const int wide = __builtin_cpu_supports("avx512f");
    const long iters = 20000000;
    for (int d = 0; d < 2; d++) {
        const int lanes = (wide ? 16 : 8) / (d + 1), chains = wide ? 20 : 10;
        double sink = 0, t0 = now();
#pragma omp parallel reduction(+ : sink)
        {
            if (wide) sink += d ? f64_512(iters) : f32_512(iters);
            else sink += d ? f64_256(iters) : f32_256(iters);
        }
        const double secs = now() - t0;
        const double flops = 2.0 * lanes * chains * iters * omp_get_max_threads();
        /* (sink is printed so that the chains cannot be optimised away) */
        printf("peak %s %.1f %g\n", d ? "float64" : "float32", flops / secs / 1e9, sink);
    }
    return 0;
}
