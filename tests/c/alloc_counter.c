/* See alloc_counter.h. The definitions here take the place of glibc's malloc, calloc,
 * realloc, free and the aligned allocators (the dynamic linker binds every library's calls
 * to the executable's own), count each call while counting is on, and pass it on to glibc's
 * __libc_* functions. */
#include <errno.h>
#include <stddef.h>

#include "alloc_counter.h"

#if defined(__GLIBC__)
extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);
extern void __libc_free(void *);

static volatile int counting = 0;
static volatile long n_calls = 0;
#define COUNT() do { if (counting) n_calls++; } while (0)

void *malloc(size_t n) { COUNT(); return __libc_malloc(n); }
void *calloc(size_t a, size_t b) { COUNT(); return __libc_calloc(a, b); }
void *realloc(void *p, size_t n) { COUNT(); return __libc_realloc(p, n); }
void free(void *p) { if (p) COUNT(); __libc_free(p); }
void *memalign(size_t al, size_t n) { COUNT(); return __libc_memalign(al, n); }
void *aligned_alloc(size_t al, size_t n) { COUNT(); return __libc_memalign(al, n); }
int posix_memalign(void **out, size_t al, size_t n)
{
    void *p;
    COUNT();
    if (al < sizeof(void *) || (al & (al - 1)) != 0) return EINVAL;
    p = __libc_memalign(al, n);
    if (!p && n) return ENOMEM;
    *out = p;
    return 0;
}

int fkb_test_alloc_supported(void) { return 1; }
void fkb_test_alloc_start(void) { n_calls = 0; counting = 1; }
long fkb_test_alloc_stop(void) { counting = 0; return n_calls; }
#else
int fkb_test_alloc_supported(void) { return 0; }
void fkb_test_alloc_start(void) {}
long fkb_test_alloc_stop(void) { return 0; }
#endif
