/* A C host using the installed FKB (no Fortran toolchain named anywhere in its build). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include <fkb/fkb.h>

static double *slurp(const char *base, const char *ext, size_t n)
{
    char path[2048];
    snprintf(path, sizeof path, "%s%s", base, ext);
    FILE *f = fopen(path, "rb");
    double *v = malloc(n * sizeof *v);
    if (!f || fread(v, sizeof *v, n, f) != n) exit(1);
    fclose(f);
    return v;
}

int main(int argc, char **argv)
{
    char path[2048];
    if (argc < 3) return 2; /* consumer CASE RTOL */
    const double rtol = atof(argv[2]);
    snprintf(path, sizeof path, "%s.fkb", argv[1]);
    fkb_network *net = NULL;
    if (fkb_network_load(path, &net) != FKB_OK) {
        fprintf(stderr, "%s\n", fkb_last_error());
        return 1;
    }
    const int64_t n = 1024, n_in = fkb_network_n_inputs(net), n_out = fkb_network_n_outputs(net);
    double *x = slurp(argv[1], ".x.bin", (size_t)(n * n_in));
    double *ref = slurp(argv[1], ".y.bin", (size_t)(n * n_out));
    double *y = malloc((size_t)(n * n_out) * sizeof *y);
    if (fkb_network_predict_f64(net, x, n, y) != FKB_OK) return 1;
    double worst = 0;
    for (int64_t i = 0; i < n * n_out; i++) {
        double e = fabs(y[i] - ref[i]) / fmax(1, fabs(ref[i]));
        if (!(e <= worst)) worst = e; /* NaN counts as a failure */
    }
    printf("c consumer (fkb %s): max |fkb - keras| / max(1,|keras|) = %.3e\n", fkb_version(), worst);
    fkb_network_free(&net);
    free(x); free(y); free(ref);
    return worst <= rtol ? 0 : 1;
}
