/* FKB's own matrix products for x86-64 CPUs: c = act(a . b + bias), with AVX-512F or, on
 * CPUs without it, AVX2 and FMA.
 *
 * Why not BLAS here: a Dense layer's product has a small, fixed weight matrix a (n_out x
 * n_in, a few hundred KiB, kept in L2) applied to a batch b (n_in x batch). Register tiles of
 * 2 vectors of rows x 12 samples (AVX2: x 6) reach the core's FMA rate on this shape without
 * packing either operand, and the bias and ReLU/LeakyReLU are applied while the tile is still
 * in registers, saving a pass over the output. Each element is one in-order chain of fused
 * multiply-adds, so a sample's result does not depend on the batch size or the thread count;
 * the AVX-512 and AVX2 kernels compute the same chains, so they give the same bits too.
 *
 * A training step's backward products use the same tiles: dW = dz . x^T reads the samples x
 * transposed (the BT tiles: each step broadcasts 12 consecutive values of one row of x), and
 * dx = W^T . dz packs W transposed into the forward kernel's panels (or, for weights beyond
 * one L2 block, transposes W into a per-thread buffer), so the whole step runs on one thread
 * pool (OpenMP).
 *
 * Compiled through target attributes, whatever flags the library is built with;
 * fkb_cpu_gemm_available() says at run time whether this CPU can run them. FKB_GEMM=blas in
 * the environment turns them off, FKB_GEMM=avx2 keeps to the AVX2 kernels (to test them on an
 * AVX-512 machine). Callers fall back to BLAS where they cannot run. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fkb_cpu_gemm.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#include <omp.h>
#include <pthread.h>

/* Below this many multiply-adds (about 10 us on one core) a product is not split over
 * threads. Waking a thread costs ~0.5 us, and where the cores are shared (another process,
 * more threads than cores) a spin-waiting thread that loses its core can cost a scheduler
 * time slice per call: measured 8 ms per call instead of 8 us for a small Conv1D column
 * model with a 32k threshold while another process ran. */
#define FKB_CPU_PARALLEL_MIN (1 << 20)
/* Chunks of column tiles per thread when a product's samples are split over the threads:
 * the most a thread can be left waiting for the others is about one chunk (1/16 of the
 * product on 2 threads). */
#ifndef FKB_CPU_CHUNKS
#define FKB_CPU_CHUNKS 8
#endif
/* At most this many threads share one product's column tiles (the claim ranges live on the
 * stack); more threads than this run the product on this many. */
#define FKB_CPU_MAX_SPLIT 256
#ifndef FKB_CPU_PREPACK_MIN_TILES
/* Weights that fit L2 are packed when at least this many column tiles read them on one thread,
 * or FKB_CPU_PREPACK_MIN_TILES_SPLIT per thread when split (each thread then also reads the
 * panels the others packed). Break-even measured on the SPCAM-like model, Intel Xeon: one
 * thread 0.96x at 11 tiles, 1.02x at 16, 1.09x at 22; two threads 0.95x at 21 per thread,
 * 1.03x at 43, 1.09x at 171. */
#define FKB_CPU_PREPACK_MIN_TILES 16
#endif
/* ... and when they are at least this large: weights that L1 holds are read in place at no
 * cost (the deep-narrow model's 64 x 64 layers: packing was 0.95x on two threads). */
#define FKB_CPU_PREPACK_MIN_BYTES (64 * 1024)
#ifndef FKB_CPU_PREPACK_MIN_TILES_SPLIT
#define FKB_CPU_PREPACK_MIN_TILES_SPLIT 40
#endif
/* A transpose of at least this many elements is split over the threads (the 65 x 256 last
 * layer of the SPCAM-like model: ~10 us on one thread). */
#define FKB_CPU_TRANSPOSE_PAR_MIN (16 * 1024)
/* Bytes of a block of weights kept in L2 while the column tiles pass (half of a 1 MiB L2,
 * the rest for the samples and the results). */
#define FKB_CPU_L2_WEIGHTS (512 * 1024)
#ifndef FKB_CPU_PACK_MIN_TILES
/* A block of weights is packed when at least this many column tiles read it. */
#define FKB_CPU_PACK_MIN_TILES 2
#endif

#define FKB_PASTE_(a, b) a##b
#define FKB_PASTE(a, b) FKB_PASTE_(a, b)
#define NAME(x) FKB_PASTE(PREFIX, x)
#define FKB_REP4(X) X(0) X(1) X(2) X(3)
#define FKB_REP6(X) FKB_REP4(X) X(4) X(5)
#define FKB_REP12(X) FKB_REP6(X) X(6) X(7) X(8) X(9) X(10) X(11)
#define FKB_REP18(X) FKB_REP12(X) X(12) X(13) X(14) X(15) X(16) X(17)
#define FKB_REP12_N(X) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11) X(12)
#define FKB_REP18_N(X) FKB_REP12_N(X) X(13) X(14) X(15) X(16) X(17) X(18)

/* Grow-only buffers per thread, freed when the thread ends: the transposed weights of
 * gemm_tn and the packed row blocks of gemm (a training step or a predict needs them every
 * layer; allocating each time would be a malloc in the hot loop). 64-byte aligned. NULL if
 * the memory cannot be had (callers then go without). */
enum { FKB_WS_TRANSPOSE = 0, FKB_WS_PACK = 1, FKB_WS_SLOTS = 2 };
typedef struct { void *p[FKB_WS_SLOTS]; size_t bytes[FKB_WS_SLOTS]; } fkb_workspace;
static pthread_key_t workspace_key;
static pthread_once_t workspace_once = PTHREAD_ONCE_INIT;
static int workspace_ok;
static void workspace_free(void *v)
{
    fkb_workspace *w = v;
    for (int s = 0; s < FKB_WS_SLOTS; s++) free(w->p[s]);
    free(w);
}
static void workspace_init(void) { workspace_ok = pthread_key_create(&workspace_key, workspace_free) == 0; }
static void *workspace(int slot, size_t bytes)
{
    fkb_workspace *w;
    pthread_once(&workspace_once, workspace_init);
    if (!workspace_ok) return NULL;
    w = pthread_getspecific(workspace_key);
    if (!w) {
        if (!(w = calloc(1, sizeof *w))) return NULL;
        if (pthread_setspecific(workspace_key, w) != 0) {
            free(w);
            return NULL;
        }
    }
    if (w->bytes[slot] < bytes) {
        void *p = NULL;
        if (posix_memalign(&p, 64, bytes) != 0) return NULL;
        free(w->p[slot]);
        w->p[slot] = p;
        w->bytes[slot] = bytes;
    }
    return w->p[slot];
}

/* Chunks of a product's column tiles (samples) over the threads: thread t owns the contiguous
 * range [chunks*t/nt, chunks*(t+1)/nt) and takes its own chunks first, from the front; a thread
 * that has run out takes from the back of the others' ranges. When the threads are equally
 * fast every thread computes the same samples in every layer, so a layer's input is in the
 * thread's own L2, written there by the layer before; when one is slower (a shared machine)
 * the other takes over its last chunks instead of waiting for them. (Plain dynamic chunks gave
 * the balance but handed the samples out at random: SPCAM-like batch 256 on 2 threads ran at
 * 1.24x one thread on an Intel Xeon, half of every layer's input coming from the other
 * core's cache; fixed halves gave 1.49x but wait for the slower core.)
 * range[t] packs front (low 32 bits) and back (high 32 bits); both move under compare-and-swap. */
static void chunk_ranges_init(uint64_t *range, int nt, int64_t chunks)
{
    for (int t = 0; t < nt; t++) {
        const uint64_t lo = (uint64_t)(chunks * t / nt), hi = (uint64_t)(chunks * (t + 1) / nt);
        __atomic_store_n(&range[t], lo | hi << 32, __ATOMIC_RELAXED);
    }
}

/* The next chunk for thread t (its own from the front, else another's from the back), or -1. */
static int64_t chunk_claim(uint64_t *range, int t, int nt)
{
    for (int i = 0; i < nt; i++) {
        const int v = (t + i) % nt;
        uint64_t cur = __atomic_load_n(&range[v], __ATOMIC_RELAXED);
        for (;;) {
            const uint64_t lo = cur & 0xFFFFFFFFu, hi = cur >> 32;
            if (lo >= hi) break;
            const uint64_t want = i == 0 ? (lo + 1) | hi << 32 : lo | (hi - 1) << 32;
            if (__atomic_compare_exchange_n(&range[v], &cur, want, 0, __ATOMIC_ACQ_REL,
                                            __ATOMIC_RELAXED))
                return (int64_t)(i == 0 ? lo : hi - 1);
        }
    }
    return -1;
}

/* ---- AVX-512F: 32 registers of 16 floats / 8 doubles, mask registers ---------------------- */
#define TARGET __attribute__((target("avx512f")))
#define NR_MAX 12
#define FKB_REP_NR FKB_REP12
#define FKB_WIDTHS(X) X(12) X(8) X(4) X(2) X(1)
#define GV_MAX 18
#define FKB_REP_GV FKB_REP18
#define FKB_REP_GV_N FKB_REP18_N

#define PREFIX s512_
#define REAL float
#define VEC __m512
#define MASK __mmask16
#define MASK_ALL ((MASK)0xFFFF)
#define W 16
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
/* (lane l of a gather reads l * k elements on: one row of a given transposed) */
#define IVEC __m512i
#define V_GATHER_INDEX(k) _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, \
    10, 11, 12, 13, 14, 15), _mm512_set1_epi32((int)(k)))
#define V_GATHER(idx, p) _mm512_i32gather_ps(idx, p, 4)
#include "gemm_body.h"
#include "gemm_undef.h"

#define PREFIX d512_
#define REAL double
#define VEC __m512d
#define MASK __mmask8
#define MASK_ALL ((MASK)0xFF)
#define W 8
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
#define IVEC __m256i
#define V_GATHER_INDEX(k) _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), \
    _mm256_set1_epi32((int)(k)))
#define V_GATHER(idx, p) _mm512_i32gather_pd(idx, p, 8)
#include "gemm_body.h"
#include "gemm_undef.h"

#undef TARGET
#undef NR_MAX
#undef FKB_REP_NR
#undef FKB_WIDTHS
#undef GV_MAX
#undef FKB_REP_GV
#undef FKB_REP_GV_N

/* ---- AVX2 + FMA: 16 registers of 8 floats / 4 doubles; masks become lane vectors --------- */
#define TARGET __attribute__((target("avx2,fma")))
#define NR_MAX 6
#define FKB_REP_NR FKB_REP6
#define FKB_WIDTHS(X) X(6) X(4) X(2) X(1)
#define GV_MAX 12
#define FKB_REP_GV FKB_REP12
#define FKB_REP_GV_N FKB_REP12_N

/* A lane mask (all bits of a lane set where bit l of m is) from an integer mask. */
#define FKB_LANES32(m) _mm256_cmpgt_epi32(_mm256_and_si256(_mm256_set1_epi32((int)(m)),     \
    _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128)), _mm256_setzero_si256())
#define FKB_LANES64(m) _mm256_cmpgt_epi64(_mm256_and_si256(_mm256_set1_epi64x((long long)(m)), \
    _mm256_setr_epi64x(1, 2, 4, 8)), _mm256_setzero_si256())

#define PREFIX s256_
#define REAL float
#define VEC __m256
#define MASK uint8_t
#define MASK_ALL ((MASK)0xFF)
#define W 8
#define V_ZERO _mm256_setzero_ps()
#define V_SET1(x) _mm256_set1_ps(x)
#define V_LOAD(p) _mm256_loadu_ps(p)
#define V_LOADZ(m, p) _mm256_maskload_ps(p, FKB_LANES32(m))
#define V_STOREM(p, m, v) _mm256_maskstore_ps(p, FKB_LANES32(m), v)
#define V_FMA(a, b, c) _mm256_fmadd_ps(a, b, c)
#define V_ADD(a, b) _mm256_add_ps(a, b)
#define V_MUL(a, b) _mm256_mul_ps(a, b)
#define V_LT0(v) _mm256_cmp_ps(v, _mm256_setzero_ps(), _CMP_LT_OQ)
#define V_BLEND(m, f, t) _mm256_blendv_ps(f, t, m)
#include "gemm_body.h"
#include "gemm_undef.h"

#define PREFIX d256_
#define REAL double
#define VEC __m256d
#define MASK uint8_t
#define MASK_ALL ((MASK)0x0F)
#define W 4
#define V_ZERO _mm256_setzero_pd()
#define V_SET1(x) _mm256_set1_pd(x)
#define V_LOAD(p) _mm256_loadu_pd(p)
#define V_LOADZ(m, p) _mm256_maskload_pd(p, FKB_LANES64(m))
#define V_STOREM(p, m, v) _mm256_maskstore_pd(p, FKB_LANES64(m), v)
#define V_FMA(a, b, c) _mm256_fmadd_pd(a, b, c)
#define V_ADD(a, b) _mm256_add_pd(a, b)
#define V_MUL(a, b) _mm256_mul_pd(a, b)
#define V_LT0(v) _mm256_cmp_pd(v, _mm256_setzero_pd(), _CMP_LT_OQ)
#define V_BLEND(m, f, t) _mm256_blendv_pd(f, t, m)
#include "gemm_body.h"
#include "gemm_undef.h"

/* 2: AVX-512F, 1: AVX2 + FMA, 0: neither, or FKB_GEMM=blas. */
static int isa_level(void)
{
    static int level = -1;  /* benign race: every thread computes the same value */
    if (level < 0) {
        const char *env = getenv("FKB_GEMM");
        int l = 0;
        __builtin_cpu_init();
        if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) l = 1;
        if (l && __builtin_cpu_supports("avx512f")) l = 2;
        if (env && strcmp(env, "blas") == 0) l = 0;
        if (env && strcmp(env, "avx2") == 0 && l > 1) l = 1;
        level = l;
    }
    return level;
}

int fkb_cpu_gemm_available(void) { return isa_level() > 0; }

int fkb_cpu_sgemm(int64_t m, int64_t n, int64_t k, const float *a, const float *b, float *c,
                  const float *bias, int act, double alpha, int threaded)
{
    switch (isa_level()) {
    case 2: s512_gemm(m, n, k, a, 0, b, 0, c, bias, act, alpha, threaded); return 0;
    case 1: s256_gemm(m, n, k, a, 0, b, 0, c, bias, act, alpha, threaded); return 0;
    default: return -1;
    }
}

int fkb_cpu_dgemm(int64_t m, int64_t n, int64_t k, const double *a, const double *b,
                  double *c, const double *bias, int act, double alpha, int threaded)
{
    switch (isa_level()) {
    case 2: d512_gemm(m, n, k, a, 0, b, 0, c, bias, act, alpha, threaded); return 0;
    case 1: d256_gemm(m, n, k, a, 0, b, 0, c, bias, act, alpha, threaded); return 0;
    default: return -1;
    }
}

int fkb_cpu_sgemm_nt(int64_t m, int64_t n, int64_t k, const float *a, const float *b,
                     float *c, int threaded)
{
    switch (isa_level()) {
    case 2: s512_gemm(m, n, k, a, 0, b, 1, c, 0, 0, 0.0, threaded); return 0;
    case 1: s256_gemm(m, n, k, a, 0, b, 1, c, 0, 0, 0.0, threaded); return 0;
    default: return -1;
    }
}

int fkb_cpu_dgemm_nt(int64_t m, int64_t n, int64_t k, const double *a, const double *b,
                     double *c, int threaded)
{
    switch (isa_level()) {
    case 2: d512_gemm(m, n, k, a, 0, b, 1, c, 0, 0, 0.0, threaded); return 0;
    case 1: d256_gemm(m, n, k, a, 0, b, 1, c, 0, 0, 0.0, threaded); return 0;
    default: return -1;
    }
}

/* dx = W^T . dz: the transposed weights packed straight into the tiles' panels where they fit
 * one L2 block, else W transposed into a per-thread buffer and the plain product. */
#define FKB_GEMM_TN(P, REAL)                                                                   \
    {                                                                                          \
        REAL *at;                                                                              \
        if (P##_packs_at(m, n, k) && P##_gemm(m, n, k, a, 1, b, 0, c, 0, 0, 0.0, threaded) == 0) \
            return 0;                                                                          \
        if (!(at = workspace(FKB_WS_TRANSPOSE, (size_t)m * (size_t)k * sizeof *at))) return -1; \
        P##_transpose(k, m, a, at, threaded);                                                  \
        return P##_gemm(m, n, k, at, 0, b, 0, c, 0, 0, 0.0, threaded);                         \
    }

int fkb_cpu_sgemm_tn(int64_t m, int64_t n, int64_t k, const float *a, const float *b,
                     float *c, int threaded)
{
    const int level = isa_level();
    if (level == 0 || k <= 0) return -1;  /* (k = 0: BLAS writes the zeros) */
    if (m <= 0 || n <= 0) return 0;
    if (level == 2) FKB_GEMM_TN(s512, float)
    FKB_GEMM_TN(s256, float)
}

int fkb_cpu_dgemm_tn(int64_t m, int64_t n, int64_t k, const double *a, const double *b,
                     double *c, int threaded)
{
    const int level = isa_level();
    if (level == 0 || k <= 0) return -1;  /* (k = 0: BLAS writes the zeros) */
    if (m <= 0 || n <= 0) return 0;
    if (level == 2) FKB_GEMM_TN(d512, double)
    FKB_GEMM_TN(d256, double)
}
#undef FKB_GEMM_TN

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
int fkb_cpu_sgemm_nt(int64_t m, int64_t n, int64_t k, const float *a, const float *b,
                     float *c, int threaded)
{
    (void)m; (void)n; (void)k; (void)a; (void)b; (void)c; (void)threaded;
    return -1;
}

int fkb_cpu_dgemm_nt(int64_t m, int64_t n, int64_t k, const double *a, const double *b,
                     double *c, int threaded)
{
    (void)m; (void)n; (void)k; (void)a; (void)b; (void)c; (void)threaded;
    return -1;
}

int fkb_cpu_sgemm_tn(int64_t m, int64_t n, int64_t k, const float *a, const float *b,
                     float *c, int threaded)
{
    (void)m; (void)n; (void)k; (void)a; (void)b; (void)c; (void)threaded;
    return -1;
}

int fkb_cpu_dgemm_tn(int64_t m, int64_t n, int64_t k, const double *a, const double *b,
                     double *c, int threaded)
{
    (void)m; (void)n; (void)k; (void)a; (void)b; (void)c; (void)threaded;
    return -1;
}
#endif
