/* FKB's own CPU matrix products (src/cpu/fkb_gemm.c), called from fkb_blas.f90. */
#ifndef FKB_CPU_GEMM_H
#define FKB_CPU_GEMM_H
#include <stdint.h>

/* Activations the products can apply in registers (values match fkb_blas.f90). */
enum { FKB_CPU_ACT_NONE = 0, FKB_CPU_ACT_RELU = 1, FKB_CPU_ACT_LEAKY = 2 };

/* 1 when this CPU and build can run them and FKB_GEMM=blas is not set. */
int fkb_cpu_gemm_available(void);

/* c(m,n) = act(a(m,k) . b(k,n) + bias), column-major and contiguous; bias may be NULL; alpha
 * is LeakyReLU's slope. threaded: may use the OpenMP threads (not inside a parallel region).
 * Return 0, or -1 (nothing written) when unavailable. */
int fkb_cpu_sgemm(int64_t m, int64_t n, int64_t k, const float *a, const float *b, float *c,
                  const float *bias, int act, double alpha, int threaded);
int fkb_cpu_dgemm(int64_t m, int64_t n, int64_t k, const double *a, const double *b,
                  double *c, const double *bias, int act, double alpha, int threaded);

/* The products of a layer's backward pass, column-major and contiguous, same return:
 * nt: c(m,n) = a(m,k) . b(n,k)^T (a weight gradient dz . x^T); tn: c(m,n) = a(k,m)^T . b(k,n)
 * (the input gradient W^T dz; a is transposed into a per-thread buffer first). */
int fkb_cpu_sgemm_nt(int64_t m, int64_t n, int64_t k, const float *a, const float *b, float *c,
                     int threaded);
int fkb_cpu_dgemm_nt(int64_t m, int64_t n, int64_t k, const double *a, const double *b,
                     double *c, int threaded);
int fkb_cpu_sgemm_tn(int64_t m, int64_t n, int64_t k, const float *a, const float *b, float *c,
                     int threaded);
int fkb_cpu_dgemm_tn(int64_t m, int64_t n, int64_t k, const double *a, const double *b,
                     double *c, int threaded);
#endif
