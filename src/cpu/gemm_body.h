/* Body of FKB's CPU matrix products, included by fkb_gemm.c once per instruction set and
 * precision with these macros defined:
 *   TARGET   the function attribute enabling the instruction set
 *   REAL     float / double          VEC   the vector type (__m512, __m256d, ...)
 *   W        lanes per vector        MASK  an integer with one bit per lane; MASK_ALL all W set
 *   NR_MAX   columns of the widest register tile, FKB_REP_NR(X) expands X(0)..X(NR_MAX-1)
 *   GV_MAX   vectors of rows of the widest single-sample panel, FKB_REP_GV(X) X(0)..X(GV_MAX-1),
 *            FKB_REP_GV_N(X) X(1)..X(GV_MAX)
 *   V_ZERO, V_SET1, V_LOAD(p), V_LOADZ(mask, p) (masked-off lanes read as 0, never touched),
 *   V_STOREM(p, mask, v), V_FMA(a, b, c), V_ADD, V_MUL, V_LT0(v) (lanes < 0, false for NaN),
 *   V_BLEND(lt0, v_false, v_true)
 *   NAME(x)  pastes the instruction set's and precision's prefix onto a function name.
 *
 * Every element is c(i,j) = sum over p = 0..k-1 in order of a(i,p)*b(p,j), one fused
 * multiply-add per step in a single accumulator: the same bits whatever the batch size, the
 * tile an element falls in, or the thread that computes it. */

/* Bias and activation applied to one vector of results, as the Fortran pass computes them
 * (y + b, then relu: y < 0 ? 0 : y, or leaky: y < 0 ? alpha*y : y; NaN passes through). */
static inline __attribute__((always_inline)) TARGET VEC NAME(epilogue)(
    VEC v, const REAL *bias, MASK m, int act, VEC alpha)
{
    if (bias) v = V_ADD(v, V_LOADZ(m, bias));
    if (act == FKB_CPU_ACT_RELU) v = V_BLEND(V_LT0(v), v, V_ZERO);
    else if (act == FKB_CPU_ACT_LEAKY) v = V_BLEND(V_LT0(v), v, V_MUL(alpha, v));
    return v;
}

/* One register tile: rows i..i+2W-1 (or i..i+W-1 when HALF) of columns j..j+NR-1.
 * a points at a(i,0), b at b(0,j), c at c(i,j); b(p,j) is b[j*ldb + p], or b[p*ldb + j] when
 * BT (b given transposed: a weight gradient dz . x^T reads the samples x so); m0/m1 mask the rows that exist (all set
 * unless MASKED, the last row panel: then the loads in the k loop are masked too). AVX-512:
 * 2W x 12 measured fastest on Zen 4 among W x 14, 2W x 14, 2W x 12, 3W x 8, 4W x 6 and 4W x 7
 * at these shapes (12 columns leave the 16 general registers enough for the column pointers);
 * AVX2: 2W x 6, the most the 16 vector registers hold (12 sums, 2 rows, 1 broadcast). */
static inline __attribute__((always_inline)) TARGET void NAME(tile)(
    const int NR, const int HALF, const int MASKED, const int BT, int64_t k, const REAL *a,
    int64_t lda, const REAL *b, int64_t ldb, REAL *c, int64_t ldc, MASK m0, MASK m1,
    const REAL *bias, int act, VEC alpha)
{
#define FKB_DECL(j) VEC x##j = V_ZERO, y##j = V_ZERO;
    FKB_REP_NR(FKB_DECL)
#undef FKB_DECL
    for (int64_t p = 0; p < k; p++) {
        const VEC a0 = MASKED ? V_LOADZ(m0, a + p * lda) : V_LOAD(a + p * lda);
        const VEC a1 = HALF ? V_ZERO : MASKED ? V_LOADZ(m1, a + p * lda + W)
                                              : V_LOAD(a + p * lda + W);
#define FKB_STEP(j)                                                                          \
        if (NR > j) {                                                                        \
            const VEC bj = V_SET1(BT ? b[p * ldb + j] : b[j * ldb + p]);                                           \
            x##j = V_FMA(a0, bj, x##j);                                                      \
            if (!HALF) y##j = V_FMA(a1, bj, y##j);                                           \
        }
        FKB_REP_NR(FKB_STEP)
#undef FKB_STEP
    }
#define FKB_STORE(j)                                                                         \
    if (NR > j) {                                                                            \
        V_STOREM(c + j * ldc, m0, NAME(epilogue)(x##j, bias, m0, act, alpha));              \
        if (!HALF) V_STOREM(c + j * ldc + W, m1, NAME(epilogue)(y##j, bias ? bias + W : 0,  \
                                                              m1, act, alpha));             \
    }
    FKB_REP_NR(FKB_STORE)
#undef FKB_STORE
}

#define FKB_TILE_INSTANCE(N) FKB_TILE_INSTANCE_(N)
#define FKB_TILE_FN(FN, N, HALF, MASKED, BT)                                                 \
    static TARGET void NAME(FN##N)(int64_t k, const REAL *a, int64_t lda, const REAL *b,     \
        int64_t ldb, REAL *c, int64_t ldc, MASK m0, MASK m1, const REAL *bias, int act,      \
        VEC alpha)                                                                           \
    { NAME(tile)(N, HALF, MASKED, BT, k, a, lda, b, ldb, c, ldc, m0, m1, bias, act, alpha); }
#define FKB_TILE_INSTANCE_(N)                                                                \
    FKB_TILE_FN(tile, N, 0, 0, 0) FKB_TILE_FN(edge, N, 0, 1, 0) FKB_TILE_FN(half, N, 1, 1, 0) \
    FKB_TILE_FN(tileT, N, 0, 0, 1) FKB_TILE_FN(edgeT, N, 0, 1, 1) FKB_TILE_FN(halfT, N, 1, 1, 1)
FKB_WIDTHS(FKB_TILE_INSTANCE)
#undef FKB_TILE_INSTANCE
#undef FKB_TILE_FN
#undef FKB_TILE_INSTANCE_

typedef void (*NAME(tile_fn))(int64_t, const REAL *, int64_t, const REAL *, int64_t, REAL *,
                              int64_t, MASK, MASK, const REAL *, int, VEC);

/* Clears the upper halves of the vector registers before returning to the callers, which are
 * compiled without AVX. GCC inserts this itself at most exits, but not on every path out of a
 * loop that calls the tiles through pointers with a vector argument (gcc 12: the gemv's loop
 * exit skipped it). Legacy SSE code that then runs with the upper state dirty pays for it on
 * some CPUs: about 250 ns per call on an Intel Xeon (family 6 model 207, KVM guest), which was
 * most of a tiny network's predict (1.0 -> 0.3 us; benchmarks/README.md, run F); free on AMD Zen. */
static inline __attribute__((always_inline)) TARGET void NAME(leave)(void) { _mm256_zeroupper(); }

static inline MASK NAME(rows_mask)(int64_t rows)
{
    return rows >= W ? MASK_ALL : rows <= 0 ? (MASK)0 : (MASK)((1u << rows) - 1u);
}

/* Columns j0..j0+nr-1 (nr <= NR_MAX) of the product, rows i0..i1-1 (i0 a multiple of 2W);
 * the row panel of 2W rows starting at row i is at ap + (i - i0) / (2W) * pstep, its column
 * p lda elements after column p-1 (a itself: ap = a + i0, lda = m, pstep = 2W; a packed
 * block: lda = 2W, pstep = 2W k); b points at b(0,j0), column j of b starts cs elements
 * after column j-1 (bt: b transposed, cs = 1 and ldb its row length). */
static TARGET void NAME(column_tile)(int64_t m, int64_t i0, int64_t i1, int nr, int64_t k,
    const REAL *ap, int64_t lda, int64_t pstep, const REAL *b, int64_t ldb, int bt, REAL *c,
    const REAL *bias, int act, REAL alpha_r)
{
    const VEC alpha = V_SET1(alpha_r);
    const int64_t cs = bt ? 1 : ldb;
    /* Tile widths, widest first (a batch of 8 is one pass over the weights, not two of 4:
     * a wide layer's weights come from L3). */
#define FKB_FN(N) NAME(FKB_PASTE(tile, N)),
    static const NAME(tile_fn) full_n[] = {FKB_WIDTHS(FKB_FN)};
#undef FKB_FN
#define FKB_FN(N) NAME(FKB_PASTE(edge, N)),
    static const NAME(tile_fn) edge_n[] = {FKB_WIDTHS(FKB_FN)};
#undef FKB_FN
#define FKB_FN(N) NAME(FKB_PASTE(half, N)),
    static const NAME(tile_fn) half_n[] = {FKB_WIDTHS(FKB_FN)};
#undef FKB_FN
#define FKB_FN(N) NAME(FKB_PASTE(tileT, N)),
    static const NAME(tile_fn) full_t[] = {FKB_WIDTHS(FKB_FN)};
#undef FKB_FN
#define FKB_FN(N) NAME(FKB_PASTE(edgeT, N)),
    static const NAME(tile_fn) edge_t[] = {FKB_WIDTHS(FKB_FN)};
#undef FKB_FN
#define FKB_FN(N) NAME(FKB_PASTE(halfT, N)),
    static const NAME(tile_fn) half_t[] = {FKB_WIDTHS(FKB_FN)};
#undef FKB_FN
#define FKB_FN(N) N,
    static const int width[] = {FKB_WIDTHS(FKB_FN)};
#undef FKB_FN
    const NAME(tile_fn) *full = bt ? full_t : full_n, *edge = bt ? edge_t : edge_n,
                        *half = bt ? half_t : half_n;
    int done = 0;
    for (int s = 0; s < (int)(sizeof width / sizeof width[0]); s++) {
        while (nr - done >= width[s]) {
            const REAL *bj = b + done * cs;
            REAL *cj = c + done * m;
            /* Fetch a share of the next tile's samples into L2 with each panel, while this
             * tile computes (measured 3-5% faster on one core at batch 4096, where the
             * samples come from L3). Pointers and offsets advance panel by panel: two
             * divisions per panel cost 2-5% at batch 24-64 of a 256-wide layer. */
            const int64_t panels = (i1 - i0 + 2 * W - 1) / (2 * W);
            const int64_t bytes = bt ? 0 : (int64_t)width[s] * k * (int64_t)sizeof(REAL);
            const int64_t share = (bytes / panels + 63) / 64 * 64;
            const char *next = (const char *)(bj + width[s] * k);
            const REAL *ai = ap;
            int64_t o = 0;
            for (int64_t i = i0; i < i1; i += 2 * W, ai += pstep) {
                const int64_t rows = i1 - i;
                for (const int64_t o1 = o + share < bytes ? o + share : bytes; o < o1; o += 64)
                    _mm_prefetch(next + o, _MM_HINT_T1);
                const REAL *bi = bias ? bias + i : 0;
                if (rows >= 2 * W)
                    full[s](k, ai, lda, bj, ldb, cj + i, m, MASK_ALL, MASK_ALL, bi,
                            act, alpha);
                else if (rows <= W)
                    half[s](k, ai, lda, bj, ldb, cj + i, m, NAME(rows_mask)(rows), 0, bi, act,
                            alpha);
                else
                    edge[s](k, ai, lda, bj, ldb, cj + i, m, NAME(rows_mask)(rows),
                            NAME(rows_mask)(rows - W), bi, act, alpha);
            }
            done += width[s];
        }
    }
    NAME(leave)();
}

/* The single-sample product: up to GV_MAX vectors of rows held in registers while the whole
 * of k streams past (one column of a per step), so it runs at the cache's bandwidth. When
 * MASKED, the first and last vectors load and store only the lanes in `first` and `last`
 * (masked loads cost more on Zen 4, so whole panels use plain ones). */
static inline __attribute__((always_inline)) TARGET void NAME(gemv_panel)(
    const int NV, const int MASKED, int64_t k, const REAL *a, int64_t lda, const REAL *x,
    REAL *y, MASK first, MASK last, const REAL *bias, int act, VEC alpha)
{
    const MASK all = MASK_ALL;
#define FKB_LANES(v) (!MASKED ? all : NV == 1 ? (MASK)(first & last) : v == 0 ? first        \
                      : NV - 1 == v ? last : all)
#define FKB_DECL(v) VEC s##v = V_ZERO;
    FKB_REP_GV(FKB_DECL)
#undef FKB_DECL
    for (int64_t p = 0; p < k; p++) {
        const VEC xp = V_SET1(x[p]);
        const REAL *ap = a + p * lda;
#define FKB_STEP(v)                                                                          \
        if (NV > v) s##v = V_FMA(MASKED && (v == 0 || NV - 1 == v)                           \
                                     ? V_LOADZ(FKB_LANES(v), ap + v * W)                     \
                                     : V_LOAD(ap + v * W), xp, s##v);
        FKB_REP_GV(FKB_STEP)
#undef FKB_STEP
    }
#define FKB_STORE(v)                                                                         \
    if (NV > v) {                                                                            \
        V_STOREM(y + v * W, FKB_LANES(v), NAME(epilogue)(s##v, bias ? bias + v * W : 0,     \
                                                         FKB_LANES(v), act, alpha));         \
    }
    FKB_REP_GV(FKB_STORE)
#undef FKB_STORE
#undef FKB_LANES
}

#define FKB_GEMV_INSTANCE(N)                                                                 \
    static TARGET void NAME(gemv##N)(int64_t k, const REAL *a, int64_t lda, const REAL *x,   \
        REAL *y, MASK first, MASK last, const REAL *bias, int act, VEC alpha)                \
    { NAME(gemv_panel)(N, 0, k, a, lda, x, y, first, last, bias, act, alpha); }              \
    static TARGET void NAME(gemv_masked##N)(int64_t k, const REAL *a, int64_t lda,           \
        const REAL *x, REAL *y, MASK first, MASK last, const REAL *bias, int act, VEC alpha) \
    { NAME(gemv_panel)(N, 1, k, a, lda, x, y, first, last, bias, act, alpha); }
FKB_REP_GV_N(FKB_GEMV_INSTANCE)
#undef FKB_GEMV_INSTANCE

typedef void (*NAME(gemv_fn))(int64_t, const REAL *, int64_t, const REAL *, REAL *, MASK, MASK,
                              const REAL *, int, VEC);

/* Rows i0..i1-1 (multiples of W, but for i1 = m) of the single-sample product; `first` masks
 * the lanes of row vector 0 (see gemv below). */
static TARGET void NAME(gemv_rows)(int64_t m, int64_t i0, int64_t i1, int64_t k,
    const REAL *a, int64_t lda, const REAL *x, REAL *y, const REAL *bias, int act,
    REAL alpha_r, MASK first)
{
    const VEC alpha = V_SET1(alpha_r);
    const MASK all = MASK_ALL;
#define FKB_NAME(N) NAME(gemv##N),
    static const NAME(gemv_fn) panel[GV_MAX] = {FKB_REP_GV_N(FKB_NAME)};
#undef FKB_NAME
#define FKB_NAME(N) NAME(gemv_masked##N),
    static const NAME(gemv_fn) masked[GV_MAX] = {FKB_REP_GV_N(FKB_NAME)};
#undef FKB_NAME
    (void)m;
    for (int64_t i = i0, rows; i < i1; i += rows) {
        /* panels of GV_MAX - 2 vectors, a last one of up to GV_MAX (so that 256 rows shifted
         * by the alignment below stay one panel on AVX-512: a separate 1-vector panel is a
         * latency-bound chain of FMAs) */
        const int64_t left = (i1 - i + W - 1) / W;
        const int nv = (int)(left <= GV_MAX ? left : GV_MAX - 2);
        rows = (i1 - i < nv * W) ? i1 - i : nv * W;
        const MASK f = i == 0 ? first : all;
        const MASK l = NAME(rows_mask)(rows - (int64_t)(nv - 1) * W);
        const NAME(gemv_fn) fn = (f != all || l != all) ? masked[nv - 1] : panel[nv - 1];
        fn(k, a + i, lda, x, y + i, f, l, bias ? bias + i : 0, act, alpha);
    }
    NAME(leave)();
}

/* y = act(a . x + bias) for one sample. Weights allocated by Fortran start 16 bytes past a
 * cache line (glibc), so every 64-byte load would straddle two lines (8% slower measured);
 * when every column starts equally misaligned (m a multiple of W) the rows are processed
 * from the vector-aligned address below a, with the lanes before row 0 masked off (masked
 * lanes are neither read nor written). */
static void NAME(gemv)(int64_t m, int64_t k, const REAL *a, const REAL *x, REAL *y,
                       const REAL *bias, int act, REAL alpha_r, int nthreads)
{
    const int64_t off = m % W == 0 ? (int64_t)((uintptr_t)a % (W * sizeof(REAL)) / sizeof(REAL)) : 0;
    const MASK first = (MASK)((MASK_ALL << off) & MASK_ALL);
    const int64_t rows = m + off;
    const int64_t nvec = (rows + W - 1) / W;
    const REAL *as = (const REAL *)((uintptr_t)a - off * sizeof(REAL));
    REAL *ys = (REAL *)((uintptr_t)y - off * sizeof(REAL));
    const REAL *bs = bias ? (const REAL *)((uintptr_t)bias - off * sizeof(REAL)) : 0;
    const int use = (int)(nvec < nthreads ? nvec : nthreads);
    /* Split the rows, in whole vectors, only when each thread gets enough work to outweigh
     * waking it. */
    if (use > 1 && m * k >= FKB_CPU_PARALLEL_MIN) {
#pragma omp parallel num_threads(use)
        {
            const int t = omp_get_thread_num(), nt = omp_get_num_threads();
            const int64_t i0 = nvec * t / nt * W, i1r = nvec * (t + 1) / nt * W;
            NAME(gemv_rows)(rows, i0, i1r < rows ? i1r : rows, k, as, m, x, ys, bs, act,
                            alpha_r, first);
        }
    } else {
        NAME(gemv_rows)(rows, 0, rows, k, as, m, x, ys, bs, act, alpha_r, first);
    }
}

/* Rows i0..i1-1 of a(m,k), i0 a multiple of 2W, copied panel by panel into dst: each panel
 * of 2W rows k x 2W contiguous (rows past i1 zero), so that the register tiles read it as one
 * stream. */
static TARGET void NAME(pack_rows)(int64_t m, int64_t i0, int64_t i1, int64_t k, const REAL *a,
                                   REAL *dst)
{
    /* column by column: each reads one contiguous run of a (rows i0..i1-1 of column p) */
    const int64_t full = (i1 - i0) / (2 * W), rows = i1 - i0 - full * 2 * W;
    const MASK m0 = NAME(rows_mask)(rows), m1 = NAME(rows_mask)(rows - W);
    for (int64_t p = 0; p < k; p++) {
        const REAL *src = a + p * m + i0;
        REAL *d = dst + 2 * W * p;
        for (int64_t q = 0; q < full; q++) {
            V_STOREM(d + q * 2 * W * k, MASK_ALL, V_LOAD(src + q * 2 * W));
            V_STOREM(d + q * 2 * W * k + W, MASK_ALL, V_LOAD(src + q * 2 * W + W));
        }
        if (rows > 0) {
            V_STOREM(d + full * 2 * W * k, MASK_ALL, V_LOADZ(m0, src + full * 2 * W));
            V_STOREM(d + full * 2 * W * k + W, MASK_ALL, V_LOADZ(m1, src + full * 2 * W + W));
        }
    }
}

/* The same panels from a given transposed (a k x m, a(p,i) at a[i*k + p]): the transposed
 * weights of dx = W^T . dz packed straight from W, one pass instead of a transpose and then a
 * pack (those two passes were 7% of a one-thread training step on the SPCAM-like model).
 * Panel by panel, 2W columns of a (contiguous runs of k) at a time, each step writing one
 * contiguous row of 2W of the panel. */
static TARGET void NAME(pack_rows_t)(int64_t m, int64_t i0, int64_t i1, int64_t k,
                                     const REAL *a, REAL *dst)
{
    (void)m;
    for (int64_t q = i0; q < i1; q += 2 * W, dst += 2 * W * k) {
        const int64_t rows = i1 - q < 2 * W ? i1 - q : 2 * W;
        const REAL *src = a + q * k;
#ifdef V_GATHER
        /* Whole panels by gathers, one vector of a panel row per instruction (AVX-512; the
         * element-by-element copy below was 4-6% of a one-thread training step on the
         * SPCAM-like model). Offsets are 32-bit: up to 2W * k below 2^31. */
        if (rows == 2 * W && k <= 0x7fffffff / (2 * W)) {
            const IVEC idx = V_GATHER_INDEX(k);
            for (int64_t p = 0; p < k; p++) {
                V_STOREM(dst + 2 * W * p, MASK_ALL, V_GATHER(idx, src + p));
                V_STOREM(dst + 2 * W * p + W, MASK_ALL, V_GATHER(idx, src + W * k + p));
            }
            continue;
        }
#endif
        for (int64_t p = 0; p < k; p++) {
            REAL *d = dst + 2 * W * p;
            for (int64_t r = 0; r < rows; r++) d[r] = src[r * k + p];
            for (int64_t r = rows; r < 2 * W; r++) d[r] = 0;
        }
    }
}

/* Panels of rows i0..i1-1 from a (at: a given transposed). */
static void NAME(pack)(int at, int64_t m, int64_t i0, int64_t i1, int64_t k, const REAL *a,
                       REAL *dst)
{
    if (at) NAME(pack_rows_t)(m, i0, i1, k, a, dst);
    else NAME(pack_rows)(m, i0, i1, k, a, dst);
}

/* Rows of a in one block whose weights stay in L2 while every column tile passes: the weights
 * of a wide layer (1024 x 1024 float32: 4 MiB) would otherwise be read once per tile of 12
 * samples, from beyond L3 where other work shares it (wide model, batch 64, 1 thread: 160 us
 * per sample, the kernel stalled on the weights). A multiple of 2W. */
static int64_t NAME(row_block)(int64_t k)
{
    const int64_t mc = (int64_t)(FKB_CPU_L2_WEIGHTS / ((k > 0 ? k : 1) * (int64_t)sizeof(REAL)));
    return mc < 2 * W ? 2 * W : mc / (2 * W) * (2 * W);
}

/* The column tiles t0..t1-1 (NR_MAX samples each) of rows r0..r1-1 of the product, rows in
 * blocks of mc; packed: the panels of rows r0..r1-1 already packed (then mc >= m), or NULL. */
static void NAME(gemm_tiles)(int64_t m, int64_t n, int64_t k, const REAL *a, const REAL *b,
    int bt, REAL *c, const REAL *bias, int act, REAL alpha_r, int64_t mc, int64_t t0,
    int64_t t1, int64_t r0, int64_t r1, const REAL *packed)
{
    for (int64_t i0 = r0; i0 < r1; i0 += mc) {
        const int64_t i1 = i0 + mc < r1 ? i0 + mc : r1;
        /* Weights too large for L2 come in blocks of rows, and a block is a strided piece
         * of memory: with a leading dimension of 1-4 KiB its columns fall in a few cache
         * sets and evict each other before the next column tile reads them (a 1024 x 1024
         * float32 layer ran at 75% of a 1000 x 1000 one's rate). When enough column tiles
         * will read it, the block is packed into a contiguous buffer first (wide model, one
         * thread: batch 64 34.6 -> 25.3 us/sample, 4096 23.7 -> 19.8). Weights that fit L2
         * are read in place (packing a thread's half of a 256 x 256 layer cost 40% at batch
         * 24 on two threads). */
        const REAL *ap = packed ? packed : a + i0;
        int64_t lda = packed ? 2 * W : m, pstep = packed ? 2 * W * k : 2 * W;
        if (!packed && i1 - i0 < m && m * k * (int64_t)sizeof(REAL) > FKB_CPU_L2_WEIGHTS &&
            t1 - t0 >= FKB_CPU_PACK_MIN_TILES) {
            const int64_t panels_b = (i1 - i0 + 2 * W - 1) / (2 * W);
            REAL *buf = workspace(FKB_WS_PACK, (size_t)(panels_b * 2 * W * k) * sizeof(REAL));
            if (buf) {
                NAME(pack_rows)(m, i0, i1, k, a, buf);
                ap = buf;
                lda = 2 * W;
                pstep = 2 * W * k;
            }
        }
        for (int64_t t = t0; t < t1; t++) {
            const int nr = (int)(n - NR_MAX * t < NR_MAX ? n - NR_MAX * t : NR_MAX);
            NAME(column_tile)(m, i0, i1, nr, k, ap, lda, pstep, b + NR_MAX * t * (bt ? 1 : k),
                              bt ? n : k, bt, c + NR_MAX * t * m, bias, act, alpha_r);
        }
    }
}

/* Thread th of nth's share of a product split by rows: its rows in whole panels, all columns.
 * packed: a buffer for all of a's panels, into which the thread packs its own (at: a given
 * transposed, which needs them), or NULL. */
static void NAME(gemm_row_share)(int64_t m, int64_t n, int64_t k, const REAL *a, int at,
    const REAL *b, int bt, REAL *c, const REAL *bias, int act, REAL alpha_r, int64_t mc, int th,
    int nth, REAL *packed)
{
    const int64_t tiles = (n + NR_MAX - 1) / NR_MAX;
    const int64_t panels = (m + 2 * W - 1) / (2 * W);
    const int64_t r0 = panels * th / nth * 2 * W, r1p = panels * (th + 1) / nth * 2 * W;
    const int64_t r1 = r1p < m ? r1p : m;
    REAL *mine = packed ? packed + r0 * k : 0;
    if (r1 <= r0) return;
    if (mine) NAME(pack)(at, m, r0, r1, k, a, mine);
    NAME(gemm_tiles)(m, n, k, a, b, bt, c, bias, act, alpha_r, mc, 0, tiles, r0, r1, mine);
}

/* c(m,n) = act(a(m,k) . b(k,n) + bias), all column-major and contiguous; bias may be NULL;
 * bt: b is given transposed, as an n x k matrix; at: a is given transposed, as a k x m matrix
 * (only where NAME(packs_at) says so: its panels are packed from it). threaded: split the
 * columns (or, for one column, the rows) over the OpenMP threads, unless the caller is already
 * inside a parallel region. Returns 0, or -1 (nothing done) when a given transposed finds no
 * memory for its panels. */
static int NAME(gemm)(int64_t m, int64_t n, int64_t k, const REAL *a, int at, const REAL *b,
                      int bt, REAL *c, const REAL *bias, int act, double alpha_in, int threaded)
{
    const REAL alpha_r = (REAL)alpha_in;
    /* (the OpenMP queries only for a product large enough to be split: two library calls per
     * layer were ~5% of a tiny network's single-sample predict) */
    const int nthreads = threaded && m * n * k >= FKB_CPU_PARALLEL_MIN && !omp_in_parallel()
                         ? omp_get_max_threads() : 1;
    if (m <= 0 || n <= 0) return 0;
    if (n == 1 && !at) {  /* (one column of b reads the same transposed or not) */
        NAME(gemv)(m, k, a, b, c, bias, act, alpha_r, nthreads);
        return 0;
    }
    const int64_t tiles = (n + NR_MAX - 1) / NR_MAX;
    const int64_t mc = NAME(row_block)(k);
    const int split = nthreads > 1 && m * n * k >= FKB_CPU_PARALLEL_MIN;
    /* Columns (samples) over the threads when there are enough, else rows in whole panels (a
     * small batch through a wide layer), else one thread. Weights beyond L2 are split by rows
     * whenever there are enough rows: each thread then packs and keeps in its L2 only its own
     * (split by columns, every thread packed all of them; wide model, 2 threads, batch 64:
     * 14-24 -> 12 us/sample, 128: 12.2 -> 11.0). */
    const int big = m * k * (int64_t)sizeof(REAL) > FKB_CPU_L2_WEIGHTS && m >= 4 * W * nthreads;
    const int by_cols = split && tiles >= 2 * nthreads && !big;
    const int by_rows = split && !by_cols && m >= 4 * W * nthreads;
    /* Weights that fit L2 and that many column tiles will read are packed once per call,
     * panel by panel, into one contiguous stream: the tiles' loads then run along it instead
     * of striding by the leading dimension (SPCAM-like, one thread, Intel Xeon: 1.07x at
     * batch 4096, 1.05x at 256, with the packing). Split over the threads with the product.
     * Transposed weights are always packed (the pack is their transpose). */
    const int64_t panels = (m + 2 * W - 1) / (2 * W);
    REAL *packed = at || (mc >= m && m * k * (int64_t)sizeof(REAL) >= FKB_CPU_PREPACK_MIN_BYTES &&
                          tiles >= (by_cols ? FKB_CPU_PREPACK_MIN_TILES_SPLIT * nthreads
                                            : FKB_CPU_PREPACK_MIN_TILES))
                   ? workspace(FKB_WS_PACK, (size_t)(panels * 2 * W * k) * sizeof(REAL)) : 0;
    if (at && !packed) return -1;
    if (by_cols) {
        /* Chunks of column tiles, each thread its own first and then the others' (see
         * chunk_claim), not halves fixed in advance: on a shared machine one core is often
         * slower than the other (a busy sibling hyperthread, another tenant), and with fixed
         * halves every layer waited for the slower one (SPCAM-like batch 4096 on 2 vCPUs: 2
         * threads ~1.4x one when a vCPU was contended, against ~2x unloaded). FKB_CPU_CHUNKS
         * chunks per thread. */
        const int64_t per = tiles / ((int64_t)nthreads * FKB_CPU_CHUNKS);
        const int64_t chunk = per > 0 ? per : 1, chunks = (tiles + chunk - 1) / chunk;
        uint64_t range[FKB_CPU_MAX_SPLIT];
        const int nsplit = nthreads < FKB_CPU_MAX_SPLIT ? nthreads : FKB_CPU_MAX_SPLIT;
#pragma omp parallel num_threads(nsplit)
        {
            const int t = omp_get_thread_num(), nt = omp_get_num_threads();
            if (t == 0) chunk_ranges_init(range, nt, chunks);
            if (packed) {
                const int64_t p0 = panels * t / nt, p1 = panels * (t + 1) / nt;
                if (p1 > p0)
                    NAME(pack)(at, m, p0 * 2 * W, p1 * 2 * W < m ? p1 * 2 * W : m, k, a,
                               packed + p0 * 2 * W * k);
            }
#pragma omp barrier
            for (int64_t q; (q = chunk_claim(range, t, nt)) >= 0;) {
                const int64_t t0 = q * chunk;
                NAME(gemm_tiles)(m, n, k, a, b, bt, c, bias, act, alpha_r, mc, t0,
                                 t0 + chunk < tiles ? t0 + chunk : tiles, 0, m, packed);
            }
        }
    } else if (by_rows) {
        /* (each thread packs and reads only its own panels: no barrier) */
#pragma omp parallel num_threads(nthreads)
        NAME(gemm_row_share)(m, n, k, a, at, b, bt, c, bias, act, alpha_r, mc,
                             omp_get_thread_num(), omp_get_num_threads(), at ? packed : 0);
    } else {
        /* (no parallel construct at all: even an inactive one costs ~0.1 us per call) */
        if (packed) NAME(pack)(at, m, 0, m, k, a, packed);
        NAME(gemm_tiles)(m, n, k, a, b, bt, c, bias, act, alpha_r, mc, 0, tiles, 0, m, packed);
    }
    return 0;
}

/* Whether gemm can take a given transposed (dx = W^T . dz): its panels are packed straight
 * from it when all of them fit the L2 block (one row block) and there is more than one column. */
static int NAME(packs_at)(int64_t m, int64_t n, int64_t k)
{
    return n > 1 && NAME(row_block)(k) >= m;
}

/* dst (cols x rows) = src (rows x cols)^T, column-major, for the columns c0..c1-1 of src (c0 a
 * multiple of 16): 16 columns of src at a time, each row of them one contiguous run of dst
 * (1.6x faster than 8 x 8 blocks on 256 x 256 floats; an AVX-512 register transpose of 16 x 16
 * blocks was no faster: the strides, not the instructions, bound it). */
static TARGET void NAME(transpose_cols)(int64_t rows, int64_t cols, int64_t c0, int64_t c1,
                                        const REAL *src, REAL *dst)
{
    const int64_t full = c0 + (c1 - c0) / 16 * 16;
    for (int64_t j0 = c0; j0 < full; j0 += 16)
        for (int64_t i = 0; i < rows; i++)
            for (int j = 0; j < 16; j++) dst[i * cols + j0 + j] = src[(j0 + j) * rows + i];
    for (int64_t j = full; j < c1; j++)
        for (int64_t i = 0; i < rows; i++) dst[i * cols + j] = src[j * rows + i];
}

/* The whole transpose; threaded: whole 16-column blocks over the OpenMP threads. On one
 * thread it was the serial part of a training step's input gradient that the other threads
 * waited for (W^T of a 256 x 256 float32 layer: ~40 us, 3-5% of a 2-thread Adam step on the
 * SPCAM-like model), and each thread now reads the columns of W that its own share of the
 * optimizer's update has just written. */
static void NAME(transpose)(int64_t rows, int64_t cols, const REAL *src, REAL *dst, int threaded)
{
    const int nthreads = threaded && !omp_in_parallel() && rows * cols >= FKB_CPU_TRANSPOSE_PAR_MIN
                         ? omp_get_max_threads() : 1;
    if (nthreads > 1) {
#pragma omp parallel num_threads(nthreads)
        {
            const int64_t blocks = (cols + 15) / 16;
            const int t = omp_get_thread_num(), nt = omp_get_num_threads();
            const int64_t c0 = blocks * t / nt * 16, c1 = blocks * (t + 1) / nt * 16;
            NAME(transpose_cols)(rows, cols, c0, c1 < cols ? c1 : cols, src, dst);
        }
    } else {
        NAME(transpose_cols)(rows, cols, 0, cols, src, dst);
    }
}
