/* FKB's own matrix products for x86-64 CPUs with AVX-512F: c = act(a . b + bias).
 *
 * Why not BLAS here: a Dense layer's product has a small, fixed weight matrix a (n_out x
 * n_in, a few hundred KiB, kept in L2) applied to a batch b (n_in x batch). Register tiles of
 * 2 vectors of rows x 12 samples reach the core's FMA rate on this shape without packing
 * either operand, and the bias and ReLU/LeakyReLU are applied while the tile is still in
 * registers, saving a pass over the output. Each element is one in-order chain of fused
 * multiply-adds, so a sample's result does not depend on the batch size or the thread count.
 *
 * Compiled for AVX-512 through target attributes, whatever flags the library is built with;
 * fkb_cpu_gemm_available() says at run time whether this CPU can run it (and FKB_GEMM=blas in
 * the environment turns it off). Callers fall back to BLAS when it cannot. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fkb_cpu_gemm.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#include <omp.h>

#define TARGET __attribute__((target("avx512f")))
/* Below this many multiply-adds (about 10 us on one core) a product is not split over
 * threads. Waking a thread costs ~0.5 us, and where the cores are shared (another process,
 * more threads than cores) a spin-waiting thread that loses its core can cost a scheduler
 * time slice per call: measured 8 ms per call instead of 8 us for a small Conv1D column
 * model with a 32k threshold while another process ran. */
#define FKB_CPU_PARALLEL_MIN (1 << 20)

#define FKB_REP12(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11)
#define FKB_REP16(X) FKB_REP12(X) X(12) X(13) X(14) X(15)
#define FKB_REP18(X) FKB_REP16(X) X(16) X(17)
#define NR_MAX 12   /* columns (samples) of the widest register tile */
#define FKB_REP18_N(X) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11) X(12) X(13) \
    X(14) X(15) X(16) X(17) X(18)

/* float32 */
#define REAL float
#define VEC __m512
#define MASK __mmask16
#define W 16
#define NAME(x) s_##x
#define V_ZERO _mm512_setzero_ps()
#define V_SET1(x) _mm512_set1_ps(x)
#define V_LOAD(p) _mm512_loadu_ps(p)
#define V_LOADZ(m, p) _mm512_maskz_loadu_ps(m, p)
#define V_STOREM(p, m, v) _mm512_mask_storeu_ps(p, m, v)
#define V_FMA(a, b, c) _mm512_fmadd_ps(a, b, c)
#define V_ADD(a, b) _mm512_add_ps(a, b)
#define V_MUL(a, b) _mm512_mul_ps(a, b)
#define V_LT0(v) _mm512_cmp_ps_mask(v, _mm512_setzero_ps(), _CMP_LT_OQ)
#define V_BLEND(m, f, t) _mm512_mask_blend_ps(m, f, t)
#include "gemm_avx512_body.h"
#undef REAL
#undef VEC
#undef MASK
#undef W
#undef NAME
#undef V_ZERO
#undef V_SET1
#undef V_LOAD
#undef V_LOADZ
#undef V_STOREM
#undef V_FMA
#undef V_ADD
#undef V_MUL
#undef V_LT0
#undef V_BLEND

/* float64 */
#define REAL double
#define VEC __m512d
#define MASK __mmask8
#define W 8
#define NAME(x) d_##x
#define V_ZERO _mm512_setzero_pd()
#define V_SET1(x) _mm512_set1_pd(x)
#define V_LOAD(p) _mm512_loadu_pd(p)
#define V_LOADZ(m, p) _mm512_maskz_loadu_pd(m, p)
#define V_STOREM(p, m, v) _mm512_mask_storeu_pd(p, m, v)
#define V_FMA(a, b, c) _mm512_fmadd_pd(a, b, c)
#define V_ADD(a, b) _mm512_add_pd(a, b)
#define V_MUL(a, b) _mm512_mul_pd(a, b)
#define V_LT0(v) _mm512_cmp_pd_mask(v, _mm512_setzero_pd(), _CMP_LT_OQ)
#define V_BLEND(m, f, t) _mm512_mask_blend_pd(m, f, t)
#include "gemm_avx512_body.h"

int fkb_cpu_gemm_available(void)
{
    static int state = -1;  /* benign race: every thread computes the same value */
    if (state < 0) {
        const char *env = getenv("FKB_GEMM");
        __builtin_cpu_init();
        state = __builtin_cpu_supports("avx512f") && !(env && strcmp(env, "blas") == 0);
    }
    return state;
}

int fkb_cpu_sgemm(int64_t m, int64_t n, int64_t k, const float *a, const float *b, float *c,
                  const float *bias, int act, double alpha, int threaded)
{
    if (!fkb_cpu_gemm_available()) return -1;
    s_gemm(m, n, k, a, b, c, bias, act, alpha, threaded);
    return 0;
}

int fkb_cpu_dgemm(int64_t m, int64_t n, int64_t k, const double *a, const double *b,
                  double *c, const double *bias, int act, double alpha, int threaded)
{
    if (!fkb_cpu_gemm_available()) return -1;
    d_gemm(m, n, k, a, b, c, bias, act, alpha, threaded);
    return 0;
}

#else /* not x86-64 with GCC or Clang: callers use BLAS */

int fkb_cpu_gemm_available(void) { return 0; }

int fkb_cpu_sgemm(int64_t m, int64_t n, int64_t k, const float *a, const float *b, float *c,
                  const float *bias, int act, double alpha, int threaded)
{
    (void)m; (void)n; (void)k; (void)a; (void)b; (void)c; (void)bias; (void)act; (void)alpha;
    (void)threaded;
    return -1;
}

int fkb_cpu_dgemm(int64_t m, int64_t n, int64_t k, const double *a, const double *b,
                  double *c, const double *bias, int act, double alpha, int threaded)
{
    (void)m; (void)n; (void)k; (void)a; (void)b; (void)c; (void)bias; (void)act; (void)alpha;
    (void)threaded;
    return -1;
}
#endif
