/* Undefines the per-precision macros of gemm_body.h (fkb_gemm.c includes the body several
 * times). */
#undef PREFIX
#undef REAL
#undef VEC
#undef MASK
#undef MASK_ALL
#undef W
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
#undef IVEC
#undef V_GATHER_INDEX
#undef V_GATHER
