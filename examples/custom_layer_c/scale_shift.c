/* A user's own layer type in C, added to FKB without touching FKB: y = a * x + offset, with a
 * scalar option `a` (default 1) and a learned vector `offset` (one value per input value).
 * The same type as the Fortran example examples/custom_layer/scale_shift.f90: a file with
 *     layer scale_shift name=... a=2.0
 *     tensor offset float32 N
 * loads in either host. It can be trained: backward gives dx = a dy, d offset = sum of dy. */
#include <stdio.h>
#include <stdlib.h>

#include "fkb/fkb.h"
#include "scale_shift.h"

typedef struct {
    double a;  /* the option */
    int64_t n; /* values per sample */
} scale_shift;

/* Once per layer as a model loads: read the options (every option in the file must be read),
 * declare the tensors the file holds for the layer, keep what forward needs. */
static int ss_configure(fkb_layer_context *ctx, void *user_data, void **instance)
{
    (void)user_data;
    scale_shift *s = malloc(sizeof *s);
    if (s == NULL) {
        fkb_layer_set_error(ctx, "out of memory");
        return 1;
    }
    s->n = fkb_layer_input_size(ctx);
    s->a = 1.0;
    const char *a = fkb_layer_option(ctx, "a");
    if (a != NULL) {
        char *end;
        s->a = strtod(a, &end);
        if (end == a || *end != '\0') {
            fkb_layer_set_error(ctx, "option a must be a number");
            free(s);
            return 1;
        }
    }
    /* The output has the input's shape (the default); one tensor of n values. */
    if (fkb_layer_declare_tensor(ctx, "offset", 1, &s->n) != FKB_OK) {
        free(s);
        return 1;
    }
    *instance = s;
    return 0;
}

/* y = a x + offset for a batch, in the model's precision. Runs on many threads at once: it
 * only reads the instance. */
static int ss_forward(void *instance, int dtype, const void *x, void *y, int64_t batch,
                      const void *const *tensors, char *error, size_t error_capacity)
{
    const scale_shift *s = instance;
    (void)error;
    (void)error_capacity;
    if (dtype == FKB_FLOAT64) {
        const double *xd = x, *offset = tensors[0];
        double *yd = y;
        for (int64_t b = 0; b < batch; ++b)
            for (int64_t i = 0; i < s->n; ++i)
                yd[b * s->n + i] = s->a * xd[b * s->n + i] + offset[i];
    } else {
        const float *xf = x, *offset = tensors[0];
        float *yf = y;
        const float a = (float)s->a;
        for (int64_t b = 0; b < batch; ++b)
            for (int64_t i = 0; i < s->n; ++i)
                yf[b * s->n + i] = a * xf[b * s->n + i] + offset[i];
    }
    return 0;
}

static int ss_backward(void *instance, int dtype, const void *x, const void *y, const void *dy,
                       void *dx, int64_t batch, const void *const *tensors, void *const *grads,
                       char *error, size_t error_capacity)
{
    const scale_shift *s = instance;
    (void)x, (void)y, (void)tensors;
    if (dtype != FKB_FLOAT64) { /* kept short: a float32 version is the same with float */
        snprintf(error, error_capacity, "scale_shift: backward is float64 only");
        return 1;
    }
    const double *d = dy;
    double *g = grads[0], *dxd = dx;
    for (int64_t i = 0; i < s->n; ++i) g[i] = 0;
    for (int64_t b = 0; b < batch; ++b)
        for (int64_t i = 0; i < s->n; ++i) {
            g[i] += d[b * s->n + i];
            if (dxd != NULL) dxd[b * s->n + i] = s->a * d[b * s->n + i];
        }
    return 0;
}

static void ss_destroy(void *instance) { free(instance); }

fkb_status register_scale_shift(void)
{
    const fkb_layer_callbacks callbacks = {ss_configure, ss_forward, ss_destroy, ss_backward};
    return fkb_register_layer_callbacks("scale_shift", &callbacks, NULL);
}
