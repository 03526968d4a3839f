/* Lock-free claim/release of a workspace slot (a C int flag), for the Fortran engine.
 * Fortran has no portable compare-and-swap on ordinary variables; C11-style builtins do. */
int fkb_atomic_try_claim(int *flag)
{
    int expected = 0;
    return __atomic_compare_exchange_n(flag, &expected, 1, 0, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED);
}

void fkb_atomic_release(int *flag)
{
    __atomic_store_n(flag, 0, __ATOMIC_RELEASE);
}
