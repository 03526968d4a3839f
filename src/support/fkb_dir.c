/* Directory listing for the Fortran engine (Fortran has no portable way to list a folder):
 * the names ending in `suffix`, sorted, written NUL-separated into buf. */
#include <dirent.h>
#include <stdlib.h>
#include <string.h>

static int by_name(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Returns the number of names (>= 0), -1 if the folder cannot be read, -2 if buf is too
 * small (then *needed holds the size needed). */
long fkb_list_dir(const char *dir, const char *suffix, char *buf, long capacity, long *needed)
{
    DIR *d = opendir(dir);
    if (!d) return -1;
    size_t n = 0, cap = 16, slen = strlen(suffix), total = 0;
    char **names = malloc(cap * sizeof *names);
    struct dirent *e;
    while (names && (e = readdir(d)) != NULL) {
        size_t len = strlen(e->d_name);
        if (len <= slen || strcmp(e->d_name + len - slen, suffix) != 0) continue;
        if (n == cap) {
            char **grown = realloc(names, 2 * cap * sizeof *names);
            if (!grown) break;
            names = grown;
            cap *= 2;
        }
        names[n] = strdup(e->d_name);
        total += len + 1;
        n++;
    }
    closedir(d);
    if (!names) return -1;
    qsort(names, n, sizeof *names, by_name);
    long result = (long)n;
    *needed = (long)total;
    if ((long)total > capacity) {
        result = -2;
    } else {
        size_t at = 0;
        for (size_t i = 0; i < n; i++) {
            size_t len = strlen(names[i]) + 1;
            memcpy(buf + at, names[i], len);
            at += len;
        }
    }
    for (size_t i = 0; i < n; i++) free(names[i]);
    free(names);
    return result;
}
