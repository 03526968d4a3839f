/* A Keras model with a custom layer class (ScaleShift, converted through fkb.register_layer by
 * tests/data/make_custom_cases.py) run from C with the layer implemented in C
 * (examples/custom_layer_c/scale_shift.c, registered through fkb_register_layer_callbacks):
 * every case agrees with Keras at batch 1, 7 and all, float and double host arrays.
 * Tolerance |a-b| <= rtol*max(1,|b|): 1e-12 (float64 model, double arrays), else 1e-5. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fkb/fkb.h"
#include "scale_shift.h"

static int n_pass = 0, n_fail = 0;

static void check(int ok, const char *what, const char *name)
{
    if (ok) {
        n_pass++;
    } else {
        n_fail++;
        printf("FAIL: %s: %s (last error: %s)\n", name, what, fkb_last_error());
    }
}

static double *read_f64(const char *dir, const char *name, const char *ext, size_t count)
{
    char path[2048];
    snprintf(path, sizeof path, "%s/%s%s", dir, name, ext);
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    double *v = malloc(count * sizeof *v);
    size_t got = fread(v, sizeof *v, count, f);
    fclose(f);
    if (got != count) {
        free(v);
        return NULL;
    }
    return v;
}

static double worst(const double *a, const double *b, size_t n, double rtol)
{
    double w = 0;
    for (size_t i = 0; i < n; i++) {
        double e = fabs(a[i] - b[i]) / (rtol * fmax(1.0, fabs(b[i])));
        if (!(e <= w)) w = e;
    }
    return w;
}

int main(int argc, char **argv)
{
    if (argc < 2) return 2;
    const char *dir = argv[1];
    char path[2048], name[256], dtype[32];
    long long n_in, n_out, n;
    /* Before registration a file naming scale_shift is refused, naming the type. */
    snprintf(path, sizeof path, "%s/custom_cases.txt", dir);
    FILE *list = fopen(path, "r");
    check(list != NULL, "custom_cases.txt", path);
    int first = 1;
    while (list && fscanf(list, "%255s %31s %lld %lld %lld", name, dtype, &n_in, &n_out, &n) == 5) {
        fkb_network *net = NULL;
        snprintf(path, sizeof path, "%s/%s.fkb", dir, name);
        if (first) {
            check(fkb_network_load(path, &net) == FKB_ERR_UNSUPPORTED &&
                      strstr(fkb_last_error(), "scale_shift") != NULL,
                  "an unregistered custom type is refused by name", name);
            check(register_scale_shift() == FKB_OK, "register scale_shift", name);
            first = 0;
        }
        check(fkb_network_load(path, &net) == FKB_OK, "load", name);
        if (!net) continue;
        int f64 = strcmp(dtype, "float64") == 0;
        double *x = read_f64(dir, name, ".x.bin", (size_t)(n_in * n));
        double *ref = read_f64(dir, name, ".y.bin", (size_t)(n_out * n));
        check(x && ref, "reference data", name);
        if (x && ref) {
            double *y = malloc((size_t)(n_out * n) * sizeof *y);
            float *xf = malloc((size_t)(n_in * n) * sizeof *xf);
            float *yf = malloc((size_t)(n_out * n) * sizeof *yf);
            double *yd = malloc((size_t)(n_out * n) * sizeof *yd);
            for (long long i = 0; i < n_in * n; i++) xf[i] = (float)x[i];
            const long long batches[3] = {1, 7, n};
            for (int k = 0; k < 3; k++) {
                long long b = batches[k];
                check(fkb_network_predict_f64(net, x, b, y) == FKB_OK, "predict_f64", name);
                check(worst(y, ref, (size_t)(b * n_out), f64 ? 1e-12 : 1e-5) <= 1,
                      "double arrays vs Keras", name);
                check(fkb_network_predict(net, xf, b, yf) == FKB_OK, "predict", name);
                for (long long i = 0; i < b * n_out; i++) yd[i] = yf[i];
                check(worst(yd, ref, (size_t)(b * n_out), 1e-5) <= 1, "float arrays vs Keras",
                      name);
            }
            free(y); free(xf); free(yf); free(yd);
        }
        free(x); free(ref);
        fkb_network_free(&net);
    }
    if (list) fclose(list);
    printf("%d passed, %d failed\n", n_pass, n_fail);
    return n_fail == 0 && n_pass > 0 ? 0 : 1;
}
