/* A counting allocator for tests: linked into a test executable, alloc_counter.c defines
 * malloc & co., so every allocation of the program and of the libraries it loads (libfkb,
 * libgfortran) goes through it. glibc only; elsewhere the functions count nothing and
 * fkb_test_alloc_supported() says 0. */
#ifndef FKB_TEST_ALLOC_COUNTER_H
#define FKB_TEST_ALLOC_COUNTER_H
int fkb_test_alloc_supported(void);
void fkb_test_alloc_start(void);  /* zero the count and start counting */
long fkb_test_alloc_stop(void);   /* stop; the number of allocator calls since the start */
#endif
