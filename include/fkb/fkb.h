/*
 * FKB, the Fortran-Keras Bridge: C API.
 *
 * Conventions
 * - Every fallible call returns an fkb_status: FKB_OK (0) on success, a negative code on
 *   failure. fkb_last_error() then gives the details of the last failure on this thread.
 * - Handles are opaque. Whoever receives a handle from a *_load call owns it and releases it
 *   with the matching *_free, which accepts NULL and sets the caller's pointer to NULL.
 * - Arrays cross as pointer + explicit sizes. Samples are contiguous: element i of sample b is
 *   x[b*n_in + i], i.e. a C/numpy (batch, n_in) row-major array, the same bytes as a Fortran
 *   array x(n_in, batch).
 *
 * Thread safety of fkb_network: the query calls (n_inputs, n_outputs, dtype, description,
 * n_tensors, get_tensor) and the predict calls may run concurrently on one handle from any
 * number of threads; each predict call takes its own workspace and gives the same bits as a
 * serial call. load, save, set_tensor and free need exclusive access to the handle.
 */
#ifndef FKB_FKB_H
#define FKB_FKB_H

#include <stddef.h>
#include <stdint.h>

#include "fkb/fkb_version.h"

#if defined(_WIN32) && defined(FKB_SHARED)
#  if defined(FKB_BUILDING)
#    define FKB_API __declspec(dllexport)
#  else
#    define FKB_API __declspec(dllimport)
#  endif
#elif defined(__GNUC__)
#  define FKB_API __attribute__((visibility("default")))
#else
#  define FKB_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

/** Result of every fallible call. The one list of codes; fkb_status_string() names each. */
typedef enum fkb_status {
    FKB_OK = 0,                /**< success */
    FKB_ERR_ARGUMENT = -1,     /**< invalid argument: NULL pointer, batch <= 0, bad index */
    FKB_ERR_IO = -2,           /**< file cannot be opened, read or written */
    FKB_ERR_FORMAT = -3,       /**< malformed or truncated model file */
    FKB_ERR_VERSION = -4,      /**< model file format version not supported */
    FKB_ERR_UNSUPPORTED = -5,  /**< unknown layer, activation or option */
    FKB_ERR_SHAPE = -6,        /**< shapes disagree (tensor vs layer, input width vs model) */
    FKB_ERR_MEMORY = -7,       /**< allocation failed or size beyond the sane limits */
    FKB_ERR_INTERNAL = -8,     /**< a bug in FKB: please report it */
    FKB_ERR_LAYER = -9         /**< a custom layer reported a failure while computing */
} fkb_status;

/** Precision a network computes in (that of the Keras model it came from). */
typedef enum fkb_dtype {
    FKB_FLOAT32 = 1,
    FKB_FLOAT64 = 2
} fkb_dtype;

/** A loaded network. */
typedef struct fkb_network fkb_network;

/** Version of the library actually linked, e.g. "0.1.0" (compare with FKB_VERSION_STRING). */
FKB_API const char *fkb_version(void);

/** Short English name of a status code; never NULL. */
FKB_API const char *fkb_status_string(fkb_status status);

/** Details of the last failure of an FKB call on the calling thread ("" if none yet).
 *  The text stays valid until the next failing FKB call on this thread. */
FKB_API const char *fkb_last_error(void);

/** Deterministic mode for the whole process: predictions are bitwise identical for any
 *  thread count, batch size and split of a batch into calls, at some cost in speed. Also
 *  switched on by the environment variable FKB_DETERMINISTIC=1 (read at the first load).
 *  Change it only while no prediction runs. */
FKB_API void fkb_set_deterministic(int on);

/** 1 if deterministic mode is on, else 0. */
FKB_API int fkb_is_deterministic(void);

/** Loads a `.fkb` file or a legacy FKB text file. On success *out owns a new network; on
 *  failure *out is set to NULL and nothing is leaked. */
FKB_API fkb_status fkb_network_load(const char *path, fkb_network **out);

/** Writes the network as a `.fkb` file (format in docs/format.md); bit-exact round trip. */
FKB_API fkb_status fkb_network_save(const fkb_network *net, const char *path);

/** Writes the network in the legacy FKB text format (Dense chains with the activations,
 *  Dropout and BatchNormalization that format knows); other networks are refused. */
FKB_API fkb_status fkb_network_save_legacy(const fkb_network *net, const char *path);

/** Releases a network; accepts NULL or a pointer to NULL; sets *net to NULL. */
FKB_API void fkb_network_free(fkb_network **net);

/** Width of one input sample, or -1 if net is NULL. */
FKB_API int64_t fkb_network_n_inputs(const fkb_network *net);

/** Width of one output sample, or -1 if net is NULL. */
FKB_API int64_t fkb_network_n_outputs(const fkb_network *net);

/** Precision the network computes in (FKB_FLOAT32 or FKB_FLOAT64), or 0 if net is NULL. */
FKB_API int fkb_network_dtype(const fkb_network *net);

/** Runs the network on a batch: x holds batch*n_inputs values, y receives batch*n_outputs.
 *  float32 host arrays; the network computes in its own precision either way. */
FKB_API fkb_status fkb_network_predict(const fkb_network *net, const float *x, int64_t batch,
                                       float *y);

/** As fkb_network_predict, with float64 host arrays. */
FKB_API fkb_status fkb_network_predict_f64(const fkb_network *net, const double *x,
                                           int64_t batch, double *y);

/* ---- Several inputs and outputs, shaped data, recurrent state (format 1.2) ----
 * A Functional model may have several inputs and outputs; each has a per-sample shape
 * (Keras' shape without the batch axis, e.g. {60, 6}) stored flat in C order, one sample
 * after another. fkb_network_n_inputs/n_outputs give the sizes of the first input/output. */

/** Number of inputs / outputs of the network (1 for a Sequential model); -1 if net is NULL. */
FKB_API int fkb_network_input_count(const fkb_network *net);
FKB_API int fkb_network_output_count(const fkb_network *net);

/** Values per sample of input / output i (0-based); -1 if there is no such input/output. */
FKB_API int64_t fkb_network_input_size(const fkb_network *net, int i);
FKB_API int64_t fkb_network_output_size(const fkb_network *net, int i);

/** Per-sample shape of input (is_output = 0) or output (is_output = 1) i: returns its rank
 *  and, if dims is not NULL and max_rank >= rank, writes the dimensions to dims; -1 if there
 *  is no such input/output. */
FKB_API int fkb_network_io_shape(const fkb_network *net, int is_output, int i, int64_t *dims,
                                 int max_rank);

/** Name of input/output i (as in Keras): returns its length and, if buf has room for it and
 *  its NUL, copies it there; -1 if there is no such input/output. */
FKB_API int fkb_network_io_name(const fkb_network *net, int is_output, int i, char *buf,
                                size_t capacity);

/** Recurrent state carried from one predict call to the next, for stepping LSTM/GRU/SimpleRNN
 *  layers from a host's time loop. Owned by the caller (one per thread or sequence); a call
 *  with another batch size starts again from zero state. */
typedef struct fkb_rnn_state fkb_rnn_state;
FKB_API fkb_rnn_state *fkb_rnn_state_create(void);    /**< NULL if out of memory */
FKB_API void fkb_rnn_state_reset(fkb_rnn_state *state); /**< back to zero; NULL is ignored */
FKB_API void fkb_rnn_state_free(fkb_rnn_state **state); /**< accepts NULL; sets *state = NULL */

/** Runs a network with n_inputs inputs and n_outputs outputs on a batch: xs[k] holds
 *  batch * fkb_network_input_size(net, k) values, ys[k] receives batch *
 *  fkb_network_output_size(net, k). state may be NULL (recurrent layers start from zero). */
FKB_API fkb_status fkb_network_predict_multi(const fkb_network *net, int n_inputs,
                                             const float *const *xs, int64_t batch,
                                             int n_outputs, float *const *ys,
                                             fkb_rnn_state *state);
FKB_API fkb_status fkb_network_predict_multi_f64(const fkb_network *net, int n_inputs,
                                                 const double *const *xs, int64_t batch,
                                                 int n_outputs, double *const *ys,
                                                 fkb_rnn_state *state);

/** The network's architecture as the header text of its `.fkb` file (docs/format.md): the
 *  layers with every hyper-parameter, tensor names and shapes, and metadata. Owned by the
 *  network, valid until it is freed; NULL if net is NULL. */
FKB_API const char *fkb_network_description(const fkb_network *net);

/** Number of parameter tensors (the `tensor` lines of the description, in that order). */
FKB_API int64_t fkb_network_n_tensors(const fkb_network *net);

/** Number of values of tensor `index` (0-based), or -1 if there is no such tensor. */
FKB_API int64_t fkb_network_tensor_size(const fkb_network *net, int64_t index);

/** Copies tensor `index` (0-based) into out, which holds `count` values; count must equal the
 *  tensor's size. Values are converted to double exactly (also for float32 networks). */
FKB_API fkb_status fkb_network_get_tensor(const fkb_network *net, int64_t index, double *out,
                                          int64_t count);

/** Overwrites tensor `index` from `count` doubles (rounded to float32 for float32 networks).
 *  Needs exclusive access to the network. */
FKB_API fkb_status fkb_network_set_tensor(fkb_network *net, int64_t index, const double *values,
                                          int64_t count);

/* ---- Training --------------------------------------------------------------------------
 * Keras-identical losses and optimizers (docs/training.md). Specs are text with Keras' names
 * and argument names: optimizer "adam learning_rate=0.001 amsgrad=1", loss "huber delta=0.5".
 * y holds batch * n_targets values (n_outputs, or 1 class index per sample for
 * sparse_categorical_crossentropy), samples contiguous like x; sample_weight may be NULL.
 * Training calls need exclusive access to the network. */

/** Sets optimizer and loss; resets the optimizer state. Refuses layers without a backward
 *  pass (naming them), unknown names or options, learning_rate <= 0 or NaN. */
FKB_API fkb_status fkb_network_compile(fkb_network *net, const char *optimizer, const char *loss);

/** One optimizer step; *loss = the batch loss before the step. On error (shapes, a NaN or
 *  infinite loss) weights and optimizer state are unchanged. */
FKB_API fkb_status fkb_network_train_on_batch(fkb_network *net, const double *x, const double *y,
                                              int64_t batch, const double *sample_weight,
                                              double *loss);

/** The compiled loss in inference mode (Dropout off); nothing changes. */
FKB_API fkb_status fkb_network_evaluate(fkb_network *net, const double *x, const double *y,
                                        int64_t batch, const double *sample_weight, double *loss);

/** The loss and its gradient with respect to every tensor (tensor order, concatenated; count
 *  = the sum of the tensor sizes), without changing anything. */
FKB_API fkb_status fkb_network_gradients(fkb_network *net, const double *x, const double *y,
                                         int64_t batch, const double *sample_weight, double *loss,
                                         double *grads, int64_t count);

/** Several inputs and/or outputs: xs[k] holds batch samples of input k (fkb_network_input_size),
 *  ts[k] batch samples of the targets of output k (fkb_network_n_targets(net, k)); one
 *  sample_weight (or NULL) for every output. With several outputs the loss is the compiled
 *  weighted sum over outputs (loss "mse;huber delta=0.5 weight=0.2": one spec per output
 *  separated by ';', each with an optional weight=, Keras' loss_weights; one spec: all
 *  outputs). Errors as fkb_network_train_on_batch: nothing changes. */
FKB_API fkb_status fkb_network_train_on_batch_multi(fkb_network *net, int n_in,
                                                    const double *const *xs, int64_t batch,
                                                    int n_out, const double *const *ts,
                                                    const double *sample_weight, double *loss);
FKB_API fkb_status fkb_network_evaluate_multi(fkb_network *net, int n_in, const double *const *xs,
                                              int64_t batch, int n_out, const double *const *ts,
                                              const double *sample_weight, double *loss);
FKB_API fkb_status fkb_network_gradients_multi(fkb_network *net, int n_in,
                                               const double *const *xs, int64_t batch, int n_out,
                                               const double *const *ts,
                                               const double *sample_weight, double *loss,
                                               double *grads, int64_t count);

/** Targets per sample of output k (0-based) for the compiled loss: the output's size, or
 *  for sparse_categorical_crossentropy one class index per row (1 for a rank-1 output, steps
 *  for a (steps, classes) output); -1 if net is NULL, 0 if there is no such output. */
FKB_API int64_t fkb_network_n_targets(const fkb_network *net, int k);

/** A custom loss: from y_pred and y_true (batch*n_outputs each, samples contiguous) and the
 *  sample weights (batch values, or NULL), write the batch loss to *loss and d loss / d y_pred
 *  to grad (batch*n_outputs). Return 0, or non-zero to report a failure (the step is then not
 *  applied and the call returns FKB_ERR_ARGUMENT). Called on the thread that trains. */
typedef int (*fkb_loss_callback)(const double *y_pred, const double *y_true, int64_t n_outputs,
                                 int64_t batch, const double *sample_weight, double *loss,
                                 double *grad, void *user_data);

/** As fkb_network_compile with a custom loss; user_data is passed to every call. */
FKB_API fkb_status fkb_network_compile_custom(fkb_network *net, const char *optimizer,
                                              fkb_loss_callback loss, void *user_data);

/** Sets the custom loss of a compiled network without resetting its optimizer state (needed
 *  after loading a file saved while training with a custom loss). */
FKB_API fkb_status fkb_network_set_custom_loss(fkb_network *net, fkb_loss_callback loss,
                                               void *user_data);

/** Optimizer steps taken since fkb_network_compile (-1 if net is NULL). */
FKB_API int64_t fkb_network_iterations(const fkb_network *net);

/* ---- Ensembles -------------------------------------------------------------------------
 * Members may differ in architecture and precision but share input and output widths.
 * Statistics over the P = members x copies predictions y_p with weights w_p = w_member/copies
 * (member weights normalised to sum 1): mean = sum w_p y_p, std = sqrt(sum w_p (y_p-mean)^2).
 * Input noise is drawn from a counter-based generator keyed by (seed, member, copy, sample,
 * feature): the same seed gives the same bits on any number of threads.
 * Thread safety: predict calls and queries may run concurrently on one ensemble; load,
 * set_noise and free need exclusive access. Host arrays are double, samples contiguous. */
typedef struct fkb_ensemble fkb_ensemble;

/** Loads n_paths member files; weights (n_paths values >= 0, positive sum) may be NULL for
 *  equal weights. On failure *out is NULL and the message names the member. */
FKB_API fkb_status fkb_ensemble_load(const char *const *paths, int64_t n_paths,
                                     const double *weights, fkb_ensemble **out);

/** Loads every *.fkb file of a folder, in name order, with equal weights. */
FKB_API fkb_status fkb_ensemble_load_directory(const char *dir, fkb_ensemble **out);

/** Loads a manifest: one `PATH [WEIGHT]` per line, paths relative to the manifest, # comments. */
FKB_API fkb_status fkb_ensemble_load_manifest(const char *path, fkb_ensemble **out);

/** Releases an ensemble; accepts NULL or a pointer to NULL; sets *ens to NULL. */
FKB_API void fkb_ensemble_free(fkb_ensemble **ens);

FKB_API int64_t fkb_ensemble_n_members(const fkb_ensemble *ens);  /**< -1 if ens is NULL */
FKB_API int64_t fkb_ensemble_n_inputs(const fkb_ensemble *ens);   /**< -1 if ens is NULL */
FKB_API int64_t fkb_ensemble_n_outputs(const fkb_ensemble *ens);  /**< -1 if ens is NULL */

/** Input perturbation: `copies` noisy copies per member, Gaussian with standard deviation std
 *  (n_std = 1 value, or one per input), from `seed`. std 0 and copies 1 switch it off. */
FKB_API fkb_status fkb_ensemble_set_noise(fkb_ensemble *ens, const double *std, int64_t n_std,
                                          int64_t copies, uint64_t seed);

/** Monte-Carlo dropout: each member's Dropout layers active at inference, `copies` passes
 *  per member with masks drawn from `seed` (shared with set_noise). on = 0 switches it off. */
FKB_API fkb_status fkb_ensemble_set_mc_dropout(fkb_ensemble *ens, int on, int64_t copies,
                                               uint64_t seed);

/** mean (batch*n_outputs) of a batch x (batch*n_inputs); std, minimum and maximum (same size
 *  as mean) are computed when not NULL. */
FKB_API fkb_status fkb_ensemble_predict(const fkb_ensemble *ens, const double *x, int64_t batch,
                                        double *mean, double *std, double *minimum,
                                        double *maximum);

/** Every member's output (its mean over noise copies): members[(m*batch + b)*n_outputs + j],
 *  i.e. a C array (n_members, batch, n_outputs). */
FKB_API fkb_status fkb_ensemble_predict_members(const fkb_ensemble *ens, const double *x,
                                                int64_t batch, double *members);


/* ---- Custom layers ---------------------------------------------------------------------
 * A host program adds its own layer types written in C or C++ (docs/adding-a-layer.md,
 * examples/custom_layer_c/): it registers a table of callbacks under a type name, and every
 * `layer NAME ...` record of that type in a model file then runs those callbacks. Register
 * before loading (registration is not thread-safe); a model file naming a type that is
 * neither built in nor registered fails to load with a message naming it. */

/** What configure sees of the layer being loaded: its options, input shape and precision.
 *  Valid only during the configure call that receives it. */
typedef struct fkb_layer_context fkb_layer_context;

typedef struct fkb_layer_callbacks {
    /** Required. Called once for each layer of this type as a model is loaded: read the
     *  options (fkb_layer_option), look at the input (fkb_layer_input_size/_shape,
     *  fkb_layer_dtype), set the output shape if it differs from the input's, declare the
     *  tensors the file holds for the layer (fkb_layer_declare_tensor, in file order), and
     *  store in *instance whatever forward needs (may stay NULL). Return 0 on success;
     *  nonzero fails the load (FKB_ERR_FORMAT, with the text given to fkb_layer_set_error),
     *  after destroy(*instance) if an instance was made. */
    int (*configure)(fkb_layer_context *ctx, void *user_data, void **instance);
    /** Required. y = layer(x) on a batch: x holds batch samples of fkb_layer_input_size values
     *  each, y receives batch samples of the output size (samples contiguous, C order of
     *  the per-sample shapes); float or double as dtype (FKB_FLOAT32/FKB_FLOAT64, the model's
     *  precision). tensors[k] is the k-th declared tensor, C order of its declared shape, same
     *  dtype; read-only. Return 0, or nonzero after writing a NUL-terminated message of at
     *  most error_capacity bytes to error: the predict call then returns FKB_ERR_LAYER with
     *  it, and the network stays usable. Called from many threads at once (one predict per
     *  thread on one network): must not modify the instance without its own locking. */
    int (*forward)(void *instance, int dtype, const void *x, void *y, int64_t batch,
                   const void *const *tensors, char *error, size_t error_capacity);
    /** Optional (NULL). Frees a non-NULL instance: called exactly once for each, when the
     *  network holding the layer is freed or loads another file, or when its load fails. */
    void (*destroy)(void *instance);
    /** Optional (NULL: the layer cannot be trained and fkb_network_compile refuses the model).
     *  Given the layer's input x, output y and dL/dy (dy), all batch samples, write dL/dx to
     *  dx (dx is NULL when not needed: the first layer) and dL/d tensor k to grads[k] (same
     *  layout as tensors[k]; overwrite, do not accumulate). Return 0, or nonzero with a
     *  message as forward. Called on the thread that trains. */
    int (*backward)(void *instance, int dtype, const void *x, const void *y, const void *dy,
                    void *dx, int64_t batch, const void *const *tensors, void *const *grads,
                    char *error, size_t error_capacity);
} fkb_layer_callbacks;

/** Registers a layer type: type_name is [a-z0-9_]+ and not a built-in type's; the table is
 *  copied, user_data is passed to configure. Registering a name again replaces its callbacks
 *  for later loads (networks already loaded keep theirs). */
FKB_API fkb_status fkb_register_layer_callbacks(const char *type_name,
                                                const fkb_layer_callbacks *callbacks,
                                                void *user_data);

/** The decoded value of option `key` of the layer record, or NULL if the record has no such
 *  option. Reading an option marks it as used: an option configure never reads makes the
 *  load fail naming it. The text stays valid until configure returns. */
FKB_API const char *fkb_layer_option(fkb_layer_context *ctx, const char *key);

/** The layer's name in the file (valid until configure returns). */
FKB_API const char *fkb_layer_name(fkb_layer_context *ctx);

/** Values per sample of the layer's input (the product of its shape). */
FKB_API int64_t fkb_layer_input_size(const fkb_layer_context *ctx);

/** Per-sample shape of the input: returns its rank and, if dims is not NULL and max_rank >=
 *  rank, writes the dimensions to dims. */
FKB_API int fkb_layer_input_shape(const fkb_layer_context *ctx, int64_t *dims, int max_rank);

/** The precision the model computes in: FKB_FLOAT32 or FKB_FLOAT64. */
FKB_API int fkb_layer_dtype(const fkb_layer_context *ctx);

/** Per-sample shape of the output (rank 1..16, dimensions >= 1); default: the input's. */
FKB_API fkb_status fkb_layer_set_output_shape(fkb_layer_context *ctx, int rank,
                                              const int64_t *dims);

/** Declares the next tensor the file holds for this layer: name [A-Za-z0-9_.]+ (at most 64
 *  bytes), Keras shape (rank 1..16). The loader then requires the layer's `tensor` records
 *  to be exactly these, in this order. At most 64 tensors. */
FKB_API fkb_status fkb_layer_declare_tensor(fkb_layer_context *ctx, const char *name, int rank,
                                            const int64_t *dims);

/** The message of a failing configure (the last one set counts). A refused context call
 *  (bad shape, duplicate tensor) fails the load with its own message even if configure
 *  returns 0. */
FKB_API void fkb_layer_set_error(fkb_layer_context *ctx, const char *message);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* FKB_FKB_H */
