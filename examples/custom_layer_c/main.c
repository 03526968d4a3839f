/* Registers a layer type written in C and runs a model that uses it.
 *   custom_layer_c MODEL.fkb               a model whose header names `scale_shift` layers
 *   custom_layer_c --demo PATH.fkb         first writes a small demo model to PATH.fkb */
#include <stdio.h>
#include <string.h>

#include "fkb/fkb.h"
#include "scale_shift.h"

/* A float32 model: input 3 -> scale_shift (a=2, offset = 0.5, 1, 1.5) -> dense 3 -> 1. */
static int write_demo(const char *path)
{
    const char header[] = "fkb-model\ndtype float32\ninput 3\n"
                          "layer scale_shift name=ss a=2.0\ntensor offset float32 3\n"
                          "layer dense name=out units=1 activation=linear use_bias=1\n"
                          "tensor kernel float32 3,1\ntensor bias float32 1\nend\n";
    const float data[] = {0.5f, 1.0f, 1.5f, /* offset */ 1.0f, -1.0f, 0.5f, /* kernel */
                          0.25f /* bias */};
    const unsigned char magic[8] = {0x89, 'F', 'K', 'B', '\r', '\n', 0x1a, '\n'};
    const uint32_t version[2] = {1, 1};
    const uint64_t hlen = sizeof header - 1;
    FILE *f = fopen(path, "wb");
    if (f == NULL) return 1;
    fwrite(magic, 1, 8, f); /* the layout of docs/format.md (little-endian host) */
    fwrite(version, 4, 2, f);
    fwrite(&hlen, 8, 1, f);
    fwrite(header, 1, hlen, f);
    fwrite(data, sizeof data, 1, f);
    return fclose(f) != 0;
}

int main(int argc, char **argv)
{
    const char *path = argc > 1 ? argv[argc - 1] : NULL;
    if (path == NULL || (argc == 3 && strcmp(argv[1], "--demo") != 0)) {
        fprintf(stderr, "usage: %s [--demo] MODEL.fkb\n", argv[0]);
        return 2;
    }
    if (argc == 3 && write_demo(path) != 0) {
        fprintf(stderr, "cannot write %s\n", path);
        return 1;
    }
    if (register_scale_shift() != FKB_OK) { /* before loading */
        fprintf(stderr, "%s\n", fkb_last_error());
        return 1;
    }
    fkb_network *net = NULL;
    if (fkb_network_load(path, &net) != FKB_OK) {
        fprintf(stderr, "%s\n", fkb_last_error());
        return 1;
    }
    const int64_t n_in = fkb_network_n_inputs(net), n_out = fkb_network_n_outputs(net);
    double x[3 * 64], y[3 * 64];
    if (n_in > 64 || n_out > 64) {
        fprintf(stderr, "this example handles up to 64 inputs and outputs\n");
        fkb_network_free(&net);
        return 1;
    }
    for (int64_t i = 0; i < 3 * n_in; ++i) x[i] = 1.0;
    if (fkb_network_predict_f64(net, x, 3, y) != FKB_OK) {
        fprintf(stderr, "%s\n", fkb_last_error());
        fkb_network_free(&net);
        return 1;
    }
    printf("outputs of the first sample:");
    for (int64_t j = 0; j < n_out; ++j) printf(" %.6g", y[j]);
    printf("\n%s", fkb_network_description(net));
    fkb_network_free(&net); /* calls the layer's destroy */
    return 0;
}
