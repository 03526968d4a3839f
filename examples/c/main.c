/* Using FKB from C: cc main.c $(pkg-config --cflags --libs fkb), or find_package(FKB). */
#include <stdio.h>
#include <stdlib.h>

#include <fkb/fkb.h>

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s MODEL.fkb\n", argv[0]);
        return 2;
    }
    fkb_network *net = NULL;
    if (fkb_network_load(argv[1], &net) != FKB_OK) {
        fprintf(stderr, "cannot load: %s\n", fkb_last_error());
        return 1;
    }
    const int64_t batch = 4, n_in = fkb_network_n_inputs(net), n_out = fkb_network_n_outputs(net);
    /* Samples are contiguous: x[b*n_in + i], like a numpy (batch, n_in) array. */
    float *x = calloc((size_t)(batch * n_in), sizeof *x);
    float *y = malloc((size_t)(batch * n_out) * sizeof *y);
    for (int64_t i = 0; i < batch * n_in; i++) x[i] = 0.01f * (float)i;
    if (fkb_network_predict(net, x, batch, y) != FKB_OK) {
        fprintf(stderr, "predict failed: %s\n", fkb_last_error());
        return 1;
    }
    for (int64_t b = 0; b < batch; b++) printf("sample %lld: y[0] = %g\n", (long long)b, y[b * n_out]);
    free(x);
    free(y);
    fkb_network_free(&net);
    return 0;
}
