/* The C API on every reference case (float and double host arrays, batch 1, 7, 1024), and its
 * contract on bad input: NULL pointers, batch <= 0, failed loads, last-error text, free(NULL).
 * Tolerance |a-b| <= rtol*max(1,|b|): rtol 1e-5 (float32 model or float host), 1e-12 (float64). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fkb/fkb.h"

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
        if (!(e <= w)) w = e; /* NaN counts as failure */
    }
    return w;
}

static void run_case(const char *dir, const char *name, const char *dtype, int64_t n_in,
                     int64_t n_out, int64_t n)
{
    char path[2048];
    snprintf(path, sizeof path, "%s/%s.fkb", dir, name);
    fkb_network *net = NULL;
    check(fkb_network_load(path, &net) == FKB_OK && net != NULL, "load", name);
    if (!net) return;
    check(fkb_network_n_inputs(net) == n_in && fkb_network_n_outputs(net) == n_out, "widths",
          name);
    int f64 = strcmp(dtype, "float64") == 0;
    check(fkb_network_dtype(net) == (f64 ? FKB_FLOAT64 : FKB_FLOAT32), "dtype", name);
    double *x = read_f64(dir, name, ".x.bin", (size_t)(n_in * n));
    double *ref = read_f64(dir, name, ".y.bin", (size_t)(n_out * n));
    check(x && ref, "reference data", name);
    if (!x || !ref) goto done;
    double *y = malloc((size_t)(n_out * n) * sizeof *y);
    float *xf = malloc((size_t)(n_in * n) * sizeof *xf);
    float *yf = malloc((size_t)(n_out * n) * sizeof *yf);
    double *yd = malloc((size_t)(n_out * n) * sizeof *yd);
    for (int64_t i = 0; i < n_in * n; i++) xf[i] = (float)x[i];
    const int64_t batches[3] = {1, 7, n};
    for (int k = 0; k < 3; k++) {
        int64_t b = batches[k];
        check(fkb_network_predict_f64(net, x, b, y) == FKB_OK, "predict_f64", name);
        check(worst(y, ref, (size_t)(b * n_out), f64 ? 1e-12 : 1e-5) <= 1, "double vs Keras", name);
        check(fkb_network_predict(net, xf, b, yf) == FKB_OK, "predict", name);
        for (int64_t i = 0; i < b * n_out; i++) yd[i] = yf[i];
        check(worst(yd, ref, (size_t)(b * n_out), 1e-5) <= 1, "float vs Keras", name);
    }
    free(y); free(xf); free(yf); free(yd);
done:
    free(x); free(ref);
    fkb_network_free(&net);
    check(net == NULL, "free sets the pointer to NULL", name);
}

static int parse_sizes(const char *text, int64_t *sizes, int max)
{
    int n = 0;
    const char *p = text;
    while (*p && n < max) {
        sizes[n++] = strtoll(p, (char **)&p, 10);
        if (*p == ',') p++;
    }
    return n;
}

/* A case with several inputs/outputs or shaped data: x.bin/y.bin rows hold the inputs/outputs
 * of a sample concatenated; fkb_network_predict_multi[_f64] takes one array per input. */
static void run_multi_case(const char *dir, const char *name, const char *dtype, int64_t n_in,
                           int64_t n_out, int64_t n, const char *in_text, const char *out_text)
{
    int64_t in_sizes[16], out_sizes[16];
    int ni = parse_sizes(in_text, in_sizes, 16), no = parse_sizes(out_text, out_sizes, 16);
    char path[2048];
    snprintf(path, sizeof path, "%s/%s.fkb", dir, name);
    fkb_network *net = NULL;
    check(fkb_network_load(path, &net) == FKB_OK && net != NULL, "load", name);
    if (!net) return;
    check(fkb_network_input_count(net) == ni && fkb_network_output_count(net) == no, "counts",
          name);
    for (int k = 0; k < ni; k++) {
        check(fkb_network_input_size(net, k) == in_sizes[k], "input size", name);
        int64_t dims[8], prod = 1;
        int rank = fkb_network_io_shape(net, 0, k, dims, 8);
        for (int r = 0; r < rank; r++) prod *= dims[r];
        check(rank >= 1 && prod == in_sizes[k], "input shape", name);
        check(fkb_network_io_name(net, 0, k, NULL, 0) > 0, "input name", name);
    }
    for (int k = 0; k < no; k++) check(fkb_network_output_size(net, k) == out_sizes[k],
                                       "output size", name);
    int f64 = strcmp(dtype, "float64") == 0;
    double *x = read_f64(dir, name, ".x.bin", (size_t)(n_in * n));
    double *ref = read_f64(dir, name, ".y.bin", (size_t)(n_out * n));
    check(x && ref, "reference data", name);
    if (!x || !ref) goto done;
    double *xs[16], *ys[16], *yall = malloc((size_t)(n_out * n) * sizeof *yall);
    float *xfs[16], *yfs[16];
    int64_t off = 0;
    for (int k = 0; k < ni; k++) {
        xs[k] = malloc((size_t)(in_sizes[k] * n) * sizeof(double));
        xfs[k] = malloc((size_t)(in_sizes[k] * n) * sizeof(float));
        for (int64_t b = 0; b < n; b++)
            for (int64_t i = 0; i < in_sizes[k]; i++) {
                xs[k][b * in_sizes[k] + i] = x[b * n_in + off + i];
                xfs[k][b * in_sizes[k] + i] = (float)x[b * n_in + off + i];
            }
        off += in_sizes[k];
    }
    for (int k = 0; k < no; k++) {
        ys[k] = malloc((size_t)(out_sizes[k] * n) * sizeof(double));
        yfs[k] = malloc((size_t)(out_sizes[k] * n) * sizeof(float));
    }
    const int64_t batches[3] = {1, 7, n};
    for (int pass = 0; pass < 6; pass++) {
        int64_t b = batches[pass % 3];
        int use_float = pass >= 3;
        fkb_status st = use_float
            ? fkb_network_predict_multi(net, ni, (const float *const *)xfs, b, no, yfs, NULL)
            : fkb_network_predict_multi_f64(net, ni, (const double *const *)xs, b, no, ys, NULL);
        check(st == FKB_OK, use_float ? "predict_multi" : "predict_multi_f64", name);
        off = 0;
        for (int k = 0; k < no; k++) {
            for (int64_t s = 0; s < b; s++)
                for (int64_t i = 0; i < out_sizes[k]; i++)
                    yall[s * n_out + off + i] = use_float ? yfs[k][s * out_sizes[k] + i]
                                                          : ys[k][s * out_sizes[k] + i];
            off += out_sizes[k];
        }
        check(worst(yall, ref, (size_t)(b * n_out), f64 && !use_float ? 1e-12 : 1e-5) <= 1,
              use_float ? "float arrays vs Keras" : "double arrays vs Keras", name);
    }
    /* The wrong number of arrays and a NULL array: clear errors, the network still works. */
    check(fkb_network_predict_multi_f64(net, ni + 1, (const double *const *)xs, 1, no, ys,
                                        NULL) == FKB_ERR_ARGUMENT &&
              strstr(fkb_last_error(), "input(s)") != NULL,
          "wrong input count refused", name);
    double *saved = xs[0];
    xs[0] = NULL;
    check(fkb_network_predict_multi_f64(net, ni, (const double *const *)xs, 1, no, ys, NULL) ==
              FKB_ERR_ARGUMENT, "NULL input refused", name);
    xs[0] = saved;
    check(fkb_network_predict_multi_f64(net, ni, (const double *const *)xs, 1, no, ys, NULL) ==
              FKB_OK, "usable after errors", name);
    if (ni > 1)
        check(fkb_network_predict_f64(net, xs[0], 1, ys[0]) == FKB_ERR_ARGUMENT,
              "single-input call on a multi-input network refused", name);
    for (int k = 0; k < ni; k++) { free(xs[k]); free(xfs[k]); }
    for (int k = 0; k < no; k++) { free(ys[k]); free(yfs[k]); }
    free(yall);
done:
    free(x); free(ref);
    fkb_network_free(&net);
}

/* A custom loss from C: mean squared error (like the built-in), or a failure when asked. */
static int c_mse(const double *y, const double *t, int64_t n_out, int64_t batch,
                 const double *w, double *loss, double *grad, void *user)
{
    (void)w;
    if (user && *(const int *)user) return 7;
    double s = 0;
    for (int64_t i = 0; i < n_out * batch; i++) {
        double e = y[i] - t[i];
        s += e * e;
        grad[i] = 2 * e / (double)(n_out * batch);
    }
    *loss = s / (double)(n_out * batch);
    return 0;
}

static void custom_loss(const char *dir)
{
    char path[2048];
    snprintf(path, sizeof path, "%s/dense_tanh_float64.fkb", dir);
    fkb_network *a = NULL, *b = NULL;
    check(fkb_network_load(path, &a) == FKB_OK && fkb_network_load(path, &b) == FKB_OK, "load",
          "custom loss");
    int fail = 0;
    check(fkb_network_compile(a, "adam learning_rate=0.01", "mse") == FKB_OK &&
              fkb_network_compile_custom(b, "adam learning_rate=0.01", c_mse, &fail) == FKB_OK,
          "compile", "custom loss");
    double x[7 * 4], y[5 * 4], la = 0, lb = 0;
    for (int i = 0; i < 28; i++) x[i] = 0.1 * (i % 9) - 0.4;
    for (int i = 0; i < 20; i++) y[i] = 0.05 * (i % 5);
    for (int step = 0; step < 4; step++) {
        fkb_network_train_on_batch(a, x, y, 4, NULL, &la);
        fkb_network_train_on_batch(b, x, y, 4, NULL, &lb);
    }
    int64_t nk = fkb_network_tensor_size(a, 0);
    double ka[4096], kb[4096];
    check(nk > 0 && nk <= 4096, "kernel size", "custom loss");
    fkb_network_get_tensor(a, 0, ka, nk);
    fkb_network_get_tensor(b, 0, kb, nk);
    double worst = 0;
    for (int64_t i = 0; i < nk; i++) worst = fmax(worst, fabs(ka[i] - kb[i]));
    check(worst <= 1e-14 && fabs(la - lb) <= 1e-14 * la, "C callback trains like the built-in MSE",
          "custom loss");
    fail = 1;
    check(fkb_network_train_on_batch(b, x, y, 4, NULL, &lb) == FKB_ERR_ARGUMENT &&
              strstr(fkb_last_error(), "callback returned 7") != NULL &&
              fkb_network_iterations(b) == 4, "a failing callback changes nothing", "custom loss");
    check(fkb_network_compile_custom(b, "adam", NULL, NULL) == FKB_ERR_ARGUMENT, "NULL callback",
          "custom loss");
    fkb_network_free(&a);
    fkb_network_free(&b);
}

static void bad_input(const char *dir, const char *name)
{
    char path[2048];
    snprintf(path, sizeof path, "%s/%s.fkb", dir, name);
    fkb_network *net = (fkb_network *)&n_pass; /* garbage that a failed load must reset */
    check(fkb_network_load("/no/such/file.fkb", &net) == FKB_ERR_IO, "missing file", "errors");
    check(net == NULL, "failed load leaves *out NULL", "errors");
    check(strstr(fkb_last_error(), "/no/such/file.fkb") != NULL, "last error names the file",
          "errors");
    check(fkb_network_load(NULL, &net) == FKB_ERR_ARGUMENT, "NULL path", "errors");
    check(fkb_network_load(path, NULL) == FKB_ERR_ARGUMENT, "NULL out", "errors");
    check(fkb_network_load(path, &net) == FKB_OK, "load", "errors");
    int64_t n_in = fkb_network_n_inputs(net), n_out = fkb_network_n_outputs(net);
    float x[64] = {0}, y[64];
    check(n_in <= 64 && n_out <= 64, "case small enough", "errors");
    check(fkb_network_predict(net, x, 0, y) == FKB_ERR_ARGUMENT, "batch 0", "errors");
    check(strstr(fkb_last_error(), "batch") != NULL, "message names the batch", "errors");
    check(fkb_network_predict(net, x, -3, y) == FKB_ERR_ARGUMENT, "negative batch", "errors");
    check(fkb_network_predict(net, NULL, 1, y) == FKB_ERR_ARGUMENT, "NULL x", "errors");
    check(fkb_network_predict(net, x, 1, NULL) == FKB_ERR_ARGUMENT, "NULL y", "errors");
    check(fkb_network_predict(NULL, x, 1, y) == FKB_ERR_ARGUMENT, "NULL network", "errors");
    check(fkb_network_predict_f64(NULL, NULL, 1, NULL) == FKB_ERR_ARGUMENT, "NULL f64", "errors");
    check(fkb_network_predict(net, x, 1, y) == FKB_OK, "still works after bad calls", "errors");
    check(fkb_network_n_inputs(NULL) == -1 && fkb_network_n_outputs(NULL) == -1, "NULL sizes",
          "errors");
    check(fkb_network_dtype(NULL) == 0 && fkb_network_description(NULL) == NULL, "NULL queries",
          "errors");
    check(fkb_network_save(net, "/no/such/dir/x.fkb") == FKB_ERR_IO, "save to bad path", "errors");
    check(fkb_network_save(NULL, "x.fkb") == FKB_ERR_ARGUMENT, "save NULL", "errors");
    check(fkb_network_save(net, NULL) == FKB_ERR_ARGUMENT, "save to NULL path", "errors");
    int64_t nt = fkb_network_n_tensors(net);
    double buf[4096];
    check(fkb_network_get_tensor(net, nt, buf, 1) == FKB_ERR_ARGUMENT, "tensor index", "errors");
    check(fkb_network_get_tensor(net, -1, buf, 1) == FKB_ERR_ARGUMENT, "negative index", "errors");
    check(fkb_network_tensor_size(net, nt) == -1, "size of missing tensor", "errors");
    int64_t sz = fkb_network_tensor_size(net, 0);
    check(sz > 0 && sz <= 4096 && fkb_network_get_tensor(net, 0, buf, sz) == FKB_OK, "get tensor",
          "errors");
    check(fkb_network_get_tensor(net, 0, buf, sz + 1) == FKB_ERR_SHAPE, "wrong count", "errors");
    /* set_tensor: scaling the first tensor changes the outputs; restoring it restores them. */
    float y0[64], y1[64];
    for (int i = 0; i < 64; i++) x[i] = 0.5f;
    fkb_network_predict(net, x, 1, y0);
    double scaled[4096];
    for (int64_t i = 0; i < sz; i++) scaled[i] = 2 * buf[i];
    check(fkb_network_set_tensor(net, 0, scaled, sz) == FKB_OK, "set tensor", "errors");
    fkb_network_predict(net, x, 1, y1);
    check(memcmp(y0, y1, (size_t)n_out * sizeof(float)) != 0, "set tensor takes effect", "errors");
    check(fkb_network_set_tensor(net, 0, buf, sz) == FKB_OK, "restore tensor", "errors");
    fkb_network_predict(net, x, 1, y1);
    check(memcmp(y0, y1, (size_t)n_out * sizeof(float)) == 0, "restore is exact", "errors");
    const char *desc = fkb_network_description(net);
    check(desc && strncmp(desc, "fkb-model\n", 10) == 0, "description", "errors");
    fkb_network_free(&net);
    fkb_network_free(&net); /* twice: *net is NULL now */
    fkb_network_free(NULL);
    /* Ensembles: NULLs, empty lists, failed loads leave *out NULL, free(NULL). */
    fkb_ensemble *ens = (fkb_ensemble *)&n_pass;
    const char *paths[2] = {path, "/no/such/member.fkb"};
    check(fkb_ensemble_load(paths, 2, NULL, &ens) == FKB_ERR_IO && ens == NULL,
          "ensemble with a missing member", "errors");
    check(strstr(fkb_last_error(), "/no/such/member.fkb") != NULL, "message names the member",
          "errors");
    check(fkb_ensemble_load(paths, 0, NULL, &ens) == FKB_ERR_ARGUMENT, "no members", "errors");
    check(fkb_ensemble_load(NULL, 1, NULL, &ens) == FKB_ERR_ARGUMENT, "NULL paths", "errors");
    check(fkb_ensemble_load(paths, 1, NULL, NULL) == FKB_ERR_ARGUMENT, "NULL out", "errors");
    double neg[2] = {-1, 1};
    paths[1] = path;
    check(fkb_ensemble_load(paths, 2, neg, &ens) == FKB_ERR_ARGUMENT, "negative weight", "errors");
    check(fkb_ensemble_load(paths, 2, NULL, &ens) == FKB_OK && fkb_ensemble_n_members(ens) == 2,
          "two members", "errors");
    double xd[64] = {0}, mean[64], sd[64], std_bad = -1, std_ok = 0.1;
    check(fkb_ensemble_set_noise(ens, &std_bad, 1, 1, 0) == FKB_ERR_ARGUMENT, "noise < 0",
          "errors");
    check(fkb_ensemble_set_noise(ens, &std_ok, 1, 0, 0) == FKB_ERR_ARGUMENT, "copies 0", "errors");
    check(fkb_ensemble_predict(ens, xd, 0, mean, NULL, NULL, NULL) == FKB_ERR_ARGUMENT, "batch 0",
          "errors");
    check(fkb_ensemble_predict(ens, NULL, 1, mean, NULL, NULL, NULL) == FKB_ERR_ARGUMENT,
          "NULL x", "errors");
    check(fkb_ensemble_predict(ens, xd, 1, mean, sd, NULL, NULL) == FKB_OK, "mean and std",
          "errors");
    int same = 1;
    for (int64_t j = 0; j < n_out; j++) same = same && sd[j] == 0;
    check(same, "identical members have zero spread", "errors");
    check(fkb_ensemble_n_members(NULL) == -1, "NULL ensemble size", "errors");
    fkb_ensemble_free(&ens);
    check(ens == NULL, "ensemble free sets NULL", "errors");
    fkb_ensemble_free(NULL);
    check(fkb_ensemble_load_directory("/no/such/folder", &ens) == FKB_ERR_IO && ens == NULL,
          "missing folder", "errors");
    check(fkb_ensemble_load_manifest("/no/such/manifest.txt", &ens) == FKB_ERR_IO,
          "missing manifest", "errors");
    check(strcmp(fkb_version(), FKB_VERSION_STRING) == 0, "runtime version = header", "errors");
    check(strcmp(fkb_status_string(FKB_ERR_FORMAT), "malformed model file") == 0 &&
              strcmp(fkb_status_string((fkb_status)-99), "unknown status") == 0,
          "status strings", "errors");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: test_c_api CASEDIR\n");
        return 2;
    }
    char path[2048];
    snprintf(path, sizeof path, "%s/cases.txt", argv[1]);
    FILE *f = fopen(path, "r");
    check(f != NULL, "cases.txt", path);
    char line[4096], name[256], dtype[32], ins[1024], outs[1024], first[256] = "";
    long long n_in, n_out, n;
    while (f && fgets(line, sizeof line, f)) {
        int got = sscanf(line, "%255s %31s %lld %lld %lld %1023s %1023s", name, dtype, &n_in,
                         &n_out, &n, ins, outs);
        if (got == 7) {
            run_multi_case(argv[1], name, dtype, n_in, n_out, n, ins, outs);
        } else if (got == 5) {
            run_case(argv[1], name, dtype, n_in, n_out, n);
            if (!first[0]) strcpy(first, name);
        }
    }
    if (f) fclose(f);
    bad_input(argv[1], first);
    custom_loss(argv[1]);
    printf("%d passed, %d failed\n", n_pass, n_fail);
    return n_fail == 0 && n_pass > 0 ? 0 : 1;
}
