/* A layer type written in C (fkb_register_layer_callbacks): "c_scale_shift",
 * y = x * scale + shift + offset with tensors scale(n), shift(n) and an option `offset`,
 * between two Dense layers in a hand-written .fkb file. Checked: predictions against a double
 * reference (float64 and float32 models, both host precisions), save -> reload byte-identical,
 * unregistered/built-in/bad names, failing configure (message, instance destroyed), unknown
 * options and missing tensors (instance destroyed), a failing forward (FKB_ERR_LAYER with the
 * callback's message, the network still usable), gradients against finite differences, and
 * destroy called exactly once per instance (networks and ensembles). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fkb/fkb.h"

static int failures = 0, checks = 0;
#define CHECK(cond, what)                                                                    \
    do {                                                                                     \
        ++checks;                                                                            \
        if (!(cond)) {                                                                       \
            ++failures;                                                                      \
            printf("FAIL line %d: %s (last error: %s)\n", __LINE__, what, fkb_last_error()); \
        }                                                                                    \
    } while (0)

/* ---- the layer ---- */

#define MAX_INSTANCES 256
static int destroy_count[MAX_INSTANCES]; /* per instance id: must end at exactly 1 */
static int n_created = 0;

typedef struct {
    int id;
    double offset;
    int64_t n;
} instance_t;

typedef struct {
    int configure_calls;
} counters_t;

static int ss_configure(fkb_layer_context *ctx, void *user_data, void **instance)
{
    counters_t *c = (counters_t *)user_data;
    c->configure_calls++;
    instance_t *inst = malloc(sizeof *inst);
    if (!inst) return 1;
    inst->id = n_created++;
    inst->n = fkb_layer_input_size(ctx);
    inst->offset = 0;
    *instance = inst; /* made first, so that the failures below test destroy */
    const char *text = fkb_layer_option(ctx, "offset");
    if (text) {
        char *end;
        inst->offset = strtod(text, &end);
        if (*end != '\0' || end == text) {
            fkb_layer_set_error(ctx, "option offset must be a number");
            return 1;
        }
    }
    int64_t dims[4];
    if (fkb_layer_input_shape(ctx, dims, 4) != 1 || dims[0] != inst->n) {
        fkb_layer_set_error(ctx, "expects rank-1 input");
        return 1;
    }
    if (fkb_layer_declare_tensor(ctx, "scale", 1, &inst->n) != FKB_OK) return 1;
    if (fkb_layer_declare_tensor(ctx, "shift", 1, &inst->n) != FKB_OK) return 1;
    return 0;
}

#define FORWARD_BODY(T)                                                                \
    {                                                                                  \
        const T *xs = x, *scale = tensors[0], *shift = tensors[1];                     \
        T *ys = y;                                                                     \
        for (int64_t b = 0; b < batch; ++b)                                            \
            for (int64_t i = 0; i < n; ++i) {                                          \
                if (isnan(xs[b * n + i])) {                                            \
                    snprintf(error, cap, "NaN in sample %lld", (long long)b);          \
                    return 3;                                                          \
                }                                                                      \
                ys[b * n + i] = xs[b * n + i] * scale[i] + shift[i] + (T)inst->offset;  \
            }                                                                          \
    }

static int ss_forward(void *instance, int dtype, const void *x, void *y, int64_t batch,
                      const void *const *tensors, char *error, size_t cap)
{
    const instance_t *inst = instance;
    int64_t n = inst->n;
    if (dtype == FKB_FLOAT64)
        FORWARD_BODY(double)
    else
        FORWARD_BODY(float)
    return 0;
}

static int ss_backward(void *instance, int dtype, const void *x, const void *y, const void *dy,
                       void *dx, int64_t batch, const void *const *tensors, void *const *grads,
                       char *error, size_t cap)
{
    const instance_t *inst = instance;
    int64_t n = inst->n;
    (void)y;
    if (dtype != FKB_FLOAT64) {
        snprintf(error, cap, "backward: float64 only in this test");
        return 1;
    }
    const double *xs = x, *dys = dy, *scale = tensors[0];
    double *gs = grads[0], *gb = grads[1], *dxs = dx;
    for (int64_t i = 0; i < n; ++i) gs[i] = gb[i] = 0;
    for (int64_t b = 0; b < batch; ++b)
        for (int64_t i = 0; i < n; ++i) {
            gs[i] += dys[b * n + i] * xs[b * n + i];
            gb[i] += dys[b * n + i];
            if (dxs) dxs[b * n + i] = dys[b * n + i] * scale[i];
        }
    return 0;
}

static void ss_destroy(void *instance)
{
    instance_t *inst = instance;
    if (inst->id >= 0 && inst->id < MAX_INSTANCES) destroy_count[inst->id]++;
    free(inst);
}

/* ---- model files ---- */

enum { N_IN = 4, N_MID = 3, N_OUT = 2 };

static double param(int k) { return 0.5 * sin(1.7 * k + 0.3); } /* k-th parameter value */

/* Writes a model: dense(4->3, linear) -> c_scale_shift(offset) -> dense(3->2, tanh); `extra`
 * is appended to the custom layer record, `tensors` says how many of its tensor records to
 * write (2 normally). */
static void write_model(const char *path, int f64, const char *offset_opt, const char *extra,
                        int tensors)
{
    const char *dt = f64 ? "float64" : "float32";
    char header[2048];
    snprintf(header, sizeof header,
             "fkb-model\ndtype %s\ninput %d\n"
             "layer dense name=d1 units=%d activation=linear use_bias=1\n"
             "tensor kernel %s %d,%d\ntensor bias %s %d\n"
             "layer c_scale_shift name=ss%s%s\n%s%s"
             "layer dense name=d2 units=%d activation=tanh use_bias=1\n"
             "tensor kernel %s %d,%d\ntensor bias %s %d\nend\n",
             dt, N_IN, N_MID, dt, N_IN, N_MID, dt, N_MID, offset_opt, extra,
             tensors >= 1 ? (f64 ? "tensor scale float64 3\n" : "tensor scale float32 3\n") : "",
             tensors >= 2 ? (f64 ? "tensor shift float64 3\n" : "tensor shift float32 3\n") : "",
             N_OUT, dt, N_MID, N_OUT, dt, N_OUT);
    int n_params = N_IN * N_MID + N_MID + tensors * N_MID + N_MID * N_OUT + N_OUT;
    FILE *f = fopen(path, "wb");
    if (!f) {
        perror(path);
        exit(2);
    }
    const unsigned char magic[8] = {0x89, 'F', 'K', 'B', '\r', '\n', 0x1a, '\n'};
    uint32_t major = 1, minor = 1; /* what the engine writes for a chain */
    uint64_t hlen = strlen(header);
    fwrite(magic, 1, 8, f);
    fwrite(&major, 4, 1, f);
    fwrite(&minor, 4, 1, f);
    fwrite(&hlen, 8, 1, f);
    fwrite(header, 1, hlen, f);
    for (int k = 0; k < n_params; ++k) {
        double v = param(k);
        float s = (float)v;
        if (f64)
            fwrite(&v, 8, 1, f);
        else
            fwrite(&s, 4, 1, f);
    }
    fclose(f);
}

/* The reference, in double, from the parameters as the model stores them. */
static void reference(int f64, double offset, const double *x, int64_t batch, double *y)
{
    double p[64];
    for (int k = 0; k < 64; ++k) p[k] = f64 ? param(k) : (double)(float)param(k);
    const double *k1 = p, *b1 = p + 12, *sc = p + 15, *sh = p + 18, *k2 = p + 21, *b2 = p + 27;
    if (!f64) offset = (double)(float)offset;
    for (int64_t b = 0; b < batch; ++b) {
        double h[N_MID];
        for (int j = 0; j < N_MID; ++j) {
            double s = b1[j];
            for (int i = 0; i < N_IN; ++i) s += x[b * N_IN + i] * k1[i * N_MID + j];
            h[j] = s * sc[j] + sh[j] + offset;
        }
        for (int j = 0; j < N_OUT; ++j) {
            double s = b2[j];
            for (int i = 0; i < N_MID; ++i) s += h[i] * k2[i * N_OUT + j];
            y[b * N_OUT + j] = tanh(s);
        }
    }
}

static double max_rel_err(const double *a, const double *b, int64_t n)
{
    double worst = 0;
    for (int64_t i = 0; i < n; ++i) {
        double e = fabs(a[i] - b[i]) / fmax(1.0, fabs(b[i]));
        if (!(e <= worst)) worst = e; /* NaN wins */
    }
    return worst;
}

static long file_bytes(const char *path, char **data)
{
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    *data = malloc((size_t)n + 1);
    if (fread(*data, 1, (size_t)n, f) != (size_t)n) n = -1;
    fclose(f);
    return n;
}

static int same_file(const char *a, const char *b)
{
    char *da = NULL, *db = NULL;
    long na = file_bytes(a, &da), nb = file_bytes(b, &db);
    int same = na > 0 && na == nb && memcmp(da, db, (size_t)na) == 0;
    free(da);
    free(db);
    return same;
}

static int all_destroyed_once(void)
{
    for (int i = 0; i < n_created; ++i)
        if (destroy_count[i] != 1) {
            printf("instance %d destroyed %d times\n", i, destroy_count[i]);
            return 0;
        }
    return 1;
}

enum { BATCH = 5 };

static void check_model(const char *path, int f64, double offset)
{
    fkb_network *net = NULL;
    fkb_status st = fkb_network_load(path, &net);
    CHECK(st == FKB_OK, "load the model with the C layer");
    if (st != FKB_OK) return;
    CHECK(fkb_network_n_inputs(net) == N_IN && fkb_network_n_outputs(net) == N_OUT, "widths");
    double x[BATCH * N_IN], y[BATCH * N_OUT], ref[BATCH * N_OUT];
    float xf[BATCH * N_IN], yf[BATCH * N_OUT];
    for (int i = 0; i < BATCH * N_IN; ++i) {
        x[i] = cos(0.37 * i) * 1.5;
        if (!f64) x[i] = (double)(float)x[i];
        xf[i] = (float)x[i];
    }
    reference(f64, offset, x, BATCH, ref);
    double tol = f64 ? 1e-12 : 1e-5;
    CHECK(fkb_network_predict_f64(net, x, BATCH, y) == FKB_OK, "predict_f64");
    CHECK(max_rel_err(y, ref, BATCH * N_OUT) <= tol, "predict_f64 agrees with the reference");
    CHECK(fkb_network_predict(net, xf, BATCH, yf) == FKB_OK, "predict (float32 host)");
    for (int i = 0; i < BATCH * N_OUT; ++i) y[i] = yf[i];
    CHECK(max_rel_err(y, ref, BATCH * N_OUT) <= (f64 ? 1e-6 : 1e-5),
          "predict (float32 host) agrees with the reference");
    CHECK(fkb_network_predict_f64(net, x, 1, y) == FKB_OK &&
              max_rel_err(y, ref, N_OUT) <= tol, "batch of one");

    /* A failing forward (this layer refuses NaN input): FKB_ERR_LAYER with the callback's
     * message; the network stays usable. */
    double bad[BATCH * N_IN];
    memcpy(bad, x, sizeof bad);
    bad[2 * N_IN + 1] = NAN;
    st = fkb_network_predict_f64(net, bad, BATCH, y);
    CHECK(st == FKB_ERR_LAYER, "failing forward -> FKB_ERR_LAYER");
    CHECK(strstr(fkb_last_error(), "NaN in sample 2") != NULL, "the callback's message is reported");
    CHECK(strstr(fkb_last_error(), "'ss'") != NULL, "the message names the layer");
    CHECK(fkb_network_predict_f64(net, x, BATCH, y) == FKB_OK &&
              max_rel_err(y, ref, BATCH * N_OUT) <= tol,
          "the next predict after a failure works");
    /* Save -> reload -> byte-identical. */
    char saved[1100], again[1100];
    snprintf(saved, sizeof saved, "%s.saved.fkb", path);
    snprintf(again, sizeof again, "%s.again.fkb", path);
    CHECK(fkb_network_save(net, saved) == FKB_OK, "save");
    CHECK(same_file(path, saved), "the saved file equals the hand-written one byte for byte");
    fkb_network *back = NULL;
    CHECK(fkb_network_load(saved, &back) == FKB_OK, "reload");
    CHECK(back && strcmp(fkb_network_description(back), fkb_network_description(net)) == 0,
          "same description after reload");
    CHECK(back && fkb_network_save(back, again) == FKB_OK && same_file(saved, again),
          "save -> reload -> save is byte-identical");
    fkb_network_free(&back);
    fkb_network_free(&net);
}

int main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : ".";
    char p64[1024], p32[1024], path[1024];
    snprintf(p64, sizeof p64, "%s/c_layer64.fkb", dir);
    snprintf(p32, sizeof p32, "%s/c_layer32.fkb", dir);
    write_model(p64, 1, " offset=0.25", "", 2);
    write_model(p32, 0, " offset=0.25", "", 2);

    fkb_network *net = NULL;
    fkb_status st = fkb_network_load(p64, &net);
    CHECK(st == FKB_ERR_UNSUPPORTED && strstr(fkb_last_error(), "'c_scale_shift'") != NULL,
          "an unregistered type is refused by name");
    CHECK(net == NULL, "no network on failure");

    counters_t counters = {0};
    fkb_layer_callbacks cb = {ss_configure, ss_forward, ss_destroy, ss_backward};
    CHECK(fkb_register_layer_callbacks("dense", &cb, &counters) == FKB_ERR_ARGUMENT &&
              strstr(fkb_last_error(), "built-in") != NULL, "built-in names are refused");
    CHECK(fkb_register_layer_callbacks("Bad Name", &cb, &counters) == FKB_ERR_ARGUMENT,
          "bad names are refused");
    fkb_layer_callbacks no_forward = {ss_configure, NULL, NULL, NULL};
    CHECK(fkb_register_layer_callbacks("c_other", &no_forward, NULL) == FKB_ERR_ARGUMENT,
          "forward is required");
    CHECK(fkb_register_layer_callbacks(NULL, &cb, NULL) == FKB_ERR_ARGUMENT, "NULL name");
    CHECK(fkb_register_layer_callbacks("c_scale_shift", &cb, &counters) == FKB_OK, "register");
    cb.forward = NULL; /* the table was copied */

    check_model(p64, 1, 0.25);
    check_model(p32, 0, 0.25);
    CHECK(counters.configure_calls > 0, "user_data reaches configure");
    CHECK(all_destroyed_once(), "every instance destroyed exactly once (networks)");

    /* Configure failures: the load fails with the message, the instance is destroyed. */
    snprintf(path, sizeof path, "%s/c_layer_bad.fkb", dir);
    write_model(path, 1, " offset=abc", "", 2);
    st = fkb_network_load(path, &net);
    CHECK(st == FKB_ERR_FORMAT && strstr(fkb_last_error(), "option offset must be a number") &&
              strstr(fkb_last_error(), "'ss'"), "a failing configure fails the load with its message");
    write_model(path, 1, " offset=1", " color=red", 2);
    st = fkb_network_load(path, &net);
    CHECK(st == FKB_ERR_UNSUPPORTED && strstr(fkb_last_error(), "unknown option 'color'"),
          "an option configure did not read fails the load naming it");
    write_model(path, 1, "", "", 1);
    st = fkb_network_load(path, &net);
    CHECK(st != FKB_OK && strstr(fkb_last_error(), "shift"), "a missing tensor fails the load");
    CHECK(net == NULL, "no network after failed loads");
    CHECK(all_destroyed_once(), "instances of failed loads destroyed exactly once");

    /* Without the offset option (optional in this layer) */
    write_model(path, 1, "", "", 2);
    check_model(path, 1, 0.0);

    /* Ensembles hold networks too. */
    const char *paths[2] = {p64, p64};
    fkb_ensemble *ens = NULL;
    int before = n_created;
    CHECK(fkb_ensemble_load(paths, 2, NULL, &ens) == FKB_OK, "ensemble of two members");
    CHECK(n_created == before + 2, "one instance per member");
    fkb_ensemble_free(&ens);
    CHECK(all_destroyed_once(), "ensemble members' instances destroyed exactly once");

    /* Training through backward: gradients against central differences. */
    CHECK(fkb_network_load(p64, &net) == FKB_OK, "load for training");
    if (net) {
        CHECK(fkb_network_compile(net, "sgd", "mean_squared_error") == FKB_OK,
              "a layer with backward can be trained");
        double x[BATCH * N_IN], t[BATCH * N_OUT], loss, lp, lm;
        for (int i = 0; i < BATCH * N_IN; ++i) x[i] = sin(0.9 * i);
        for (int i = 0; i < BATCH * N_OUT; ++i) t[i] = 0.1 * i - 0.3;
        int64_t nt = fkb_network_n_tensors(net), total = 0;
        for (int64_t k = 0; k < nt; ++k) total += fkb_network_tensor_size(net, k);
        double *g = malloc((size_t)total * sizeof *g);
        CHECK(fkb_network_gradients(net, x, t, BATCH, NULL, &loss, g, total) == FKB_OK,
              "gradients");
        double worst = 0;
        int64_t at = 0;
        for (int64_t k = 0; k < nt; ++k) {
            int64_t n = fkb_network_tensor_size(net, k);
            double v[16];
            fkb_network_get_tensor(net, k, v, n);
            for (int64_t i = 0; i < n; ++i) {
                double keep = v[i], h = 1e-6;
                v[i] = keep + h;
                fkb_network_set_tensor(net, k, v, n);
                fkb_network_evaluate(net, x, t, BATCH, NULL, &lp);
                v[i] = keep - h;
                fkb_network_set_tensor(net, k, v, n);
                fkb_network_evaluate(net, x, t, BATCH, NULL, &lm);
                v[i] = keep;
                fkb_network_set_tensor(net, k, v, n);
                double fd = (lp - lm) / (2 * h);
                double e = fabs(fd - g[at + i]) / fmax(1e-3, fabs(fd));
                if (!(e <= worst)) worst = e;
            }
            at += n;
        }
        printf("gradients vs central differences: worst relative error %.2e\n", worst);
        CHECK(worst < 1e-5, "gradients (through the C layer's backward) = finite differences");
        free(g);
        CHECK(fkb_network_train_on_batch(net, x, t, BATCH, NULL, &loss) == FKB_OK,
              "train_on_batch");
        fkb_network_free(&net);
    }

    /* A failing backward (float32 in this test): the step is refused, nothing changes. */
    CHECK(fkb_network_load(p32, &net) == FKB_OK, "load float32 for training");
    if (net) {
        CHECK(fkb_network_compile(net, "sgd", "mean_squared_error") == FKB_OK, "compile");
        double x[BATCH * N_IN], t[BATCH * N_OUT], loss, before[3], after[3];
        for (int i = 0; i < BATCH * N_IN; ++i) x[i] = sin(0.9 * i);
        for (int i = 0; i < BATCH * N_OUT; ++i) t[i] = 0.1 * i - 0.3;
        fkb_network_get_tensor(net, 2, before, 3);
        st = fkb_network_train_on_batch(net, x, t, BATCH, NULL, &loss);
        CHECK(st == FKB_ERR_LAYER && strstr(fkb_last_error(), "float64 only in this test"),
              "a failing backward fails the step with FKB_ERR_LAYER and its message");
        fkb_network_get_tensor(net, 2, after, 3);
        CHECK(memcmp(before, after, sizeof before) == 0 && fkb_network_iterations(net) == 0,
              "no update after a failing backward");
        CHECK(fkb_network_evaluate(net, x, t, BATCH, NULL, &loss) == FKB_OK,
              "evaluate (no backward) still works");
        fkb_network_free(&net);
    }

    /* Re-registering replaces the callbacks for later loads. */
    fkb_layer_callbacks no_backward = {ss_configure, ss_forward, ss_destroy, NULL};
    CHECK(fkb_register_layer_callbacks("c_scale_shift", &no_backward, &counters) == FKB_OK,
          "register again");
    CHECK(fkb_network_load(p64, &net) == FKB_OK, "load after re-registering");
    CHECK(fkb_network_compile(net, "sgd", "mean_squared_error") == FKB_ERR_UNSUPPORTED,
          "without backward the model cannot be trained");
    fkb_network_free(&net);

    CHECK(n_created > 0 && all_destroyed_once(), "every instance destroyed exactly once");
    printf("%d instances; %d checks, %d failed\n", n_created, checks, failures);
    return failures ? 1 : 0;
}
