// FKB C++ interface: a header-only RAII wrapper over the C API (fkb.h).
//
//   fkb::Network net("model.fkb");                 // throws fkb::Error on failure
//   std::vector<float> y = net.predict(x, batch);  // x: batch * n_inputs() values
//
// Thread safety is that of the C handle: predict and the queries may run concurrently on one
// Network; load, save, set_tensor and destruction need exclusive access.
#ifndef FKB_FKB_HPP
#define FKB_FKB_HPP

#include <cstddef>
#include <cstdint>
#include <exception>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "fkb/fkb.h"

namespace fkb {

/// Every failure of the C API, with its status code and the library's message.
class Error : public std::runtime_error {
public:
    Error(fkb_status status, const std::string &what)
        : std::runtime_error(what), status_(status) {}
    fkb_status status() const noexcept { return status_; }

private:
    fkb_status status_;
};

namespace detail {
inline void check(fkb_status status)
{
    if (status != FKB_OK)
        throw Error(status, std::string(fkb_status_string(status)) + ": " + fkb_last_error());
}
} // namespace detail

/// Recurrent state carried between predict calls (one per sequence or thread).
class RnnState {
public:
    RnnState() : state_(fkb_rnn_state_create())
    {
        if (state_ == nullptr) throw Error(FKB_ERR_MEMORY, "cannot allocate a recurrent state");
    }
    ~RnnState() { fkb_rnn_state_free(&state_); }
    RnnState(const RnnState &) = delete;
    RnnState &operator=(const RnnState &) = delete;
    void reset() noexcept { fkb_rnn_state_reset(state_); }
    fkb_rnn_state *handle() const noexcept { return state_; }

private:
    fkb_rnn_state *state_;
};

/// A loaded network; owns its handle (movable, not copyable).
class Network {
public:
    explicit Network(const std::string &path) { detail::check(fkb_network_load(path.c_str(), &net_)); }
    ~Network() { fkb_network_free(&net_); }
    Network(Network &&other) noexcept : net_(std::exchange(other.net_, nullptr)) {}
    Network &operator=(Network &&other) noexcept
    {
        if (this != &other) {
            fkb_network_free(&net_);
            net_ = std::exchange(other.net_, nullptr);
        }
        return *this;
    }
    Network(const Network &) = delete;
    Network &operator=(const Network &) = delete;

    std::int64_t n_inputs() const { return fkb_network_n_inputs(net_); }
    std::int64_t n_outputs() const { return fkb_network_n_outputs(net_); }
    fkb_dtype dtype() const { return static_cast<fkb_dtype>(fkb_network_dtype(net_)); }
    std::string description() const { return fkb_network_description(net_); }

    void save(const std::string &path) const { detail::check(fkb_network_save(net_, path.c_str())); }
    void save_legacy(const std::string &path) const
    {
        detail::check(fkb_network_save_legacy(net_, path.c_str()));
    }

    /// y[b*n_outputs + j] for a batch of samples x[b*n_inputs + i]; sizes are checked.
    void predict(const float *x, std::int64_t batch, float *y) const
    {
        detail::check(fkb_network_predict(net_, x, batch, y));
    }
    void predict(const double *x, std::int64_t batch, double *y) const
    {
        detail::check(fkb_network_predict_f64(net_, x, batch, y));
    }
    template <typename T> std::vector<T> predict(const std::vector<T> &x) const
    {
        const std::int64_t n_in = n_inputs();
        if (n_in <= 0 || x.size() % static_cast<std::size_t>(n_in) != 0)
            throw Error(FKB_ERR_SHAPE, "input size is not a multiple of n_inputs()");
        const std::int64_t batch = static_cast<std::int64_t>(x.size()) / n_in;
        std::vector<T> y(static_cast<std::size_t>(batch * n_outputs()));
        predict(x.data(), batch, y.data());
        return y;
    }

    // ---- several inputs and outputs ----
    int input_count() const { return fkb_network_input_count(net_); }
    int output_count() const { return fkb_network_output_count(net_); }
    std::int64_t input_size(int i) const { return fkb_network_input_size(net_, i); }
    std::int64_t output_size(int i) const { return fkb_network_output_size(net_, i); }
    /// Per-sample shape (Keras' shape without the batch axis) of input/output i.
    std::vector<std::int64_t> input_shape(int i) const { return io_shape(0, i); }
    std::vector<std::int64_t> output_shape(int i) const { return io_shape(1, i); }
    std::string input_name(int i) const { return io_name(0, i); }
    std::string output_name(int i) const { return io_name(1, i); }

    /// One vector per input (batch * input_size(k) values each) -> one vector per output.
    template <typename T>
    std::vector<std::vector<T>> predict(const std::vector<std::vector<T>> &xs,
                                        RnnState *state = nullptr) const
    {
        const int n_in = input_count(), n_out = output_count();
        if (static_cast<int>(xs.size()) != n_in)
            throw Error(FKB_ERR_ARGUMENT, "the network has " + std::to_string(n_in) +
                                              " input(s), got " + std::to_string(xs.size()));
        std::int64_t batch = -1;
        std::vector<const T *> xp;
        for (int k = 0; k < n_in; ++k) {
            const std::int64_t size = input_size(k);
            if (size <= 0 || xs[k].size() % static_cast<std::size_t>(size) != 0)
                throw Error(FKB_ERR_SHAPE, "input " + std::to_string(k) +
                                               ": size is not a multiple of input_size()");
            const std::int64_t b = static_cast<std::int64_t>(xs[k].size()) / size;
            if (batch >= 0 && b != batch)
                throw Error(FKB_ERR_SHAPE, "every input must hold the same batch size");
            batch = b;
            xp.push_back(xs[k].data());
        }
        std::vector<std::vector<T>> ys(static_cast<std::size_t>(n_out));
        std::vector<T *> yp;
        for (int k = 0; k < n_out; ++k) {
            ys[k].resize(static_cast<std::size_t>(batch * output_size(k)));
            yp.push_back(ys[k].data());
        }
        fkb_rnn_state *s = state ? state->handle() : nullptr;
        if constexpr (std::is_same_v<T, float>)
            detail::check(fkb_network_predict_multi(net_, n_in, xp.data(), batch, n_out,
                                                    yp.data(), s));
        else
            detail::check(fkb_network_predict_multi_f64(net_, n_in, xp.data(), batch, n_out,
                                                        yp.data(), s));
        return ys;
    }

    /// The C handle, for calls this wrapper does not cover; still owned by this object.
    fkb_network *handle() const noexcept { return net_; }

private:
    std::vector<std::int64_t> io_shape(int is_output, int i) const
    {
        const int rank = fkb_network_io_shape(net_, is_output, i, nullptr, 0);
        if (rank < 0) throw Error(FKB_ERR_ARGUMENT, "no such input/output");
        std::vector<std::int64_t> dims(static_cast<std::size_t>(rank));
        fkb_network_io_shape(net_, is_output, i, dims.data(), rank);
        return dims;
    }
    std::string io_name(int is_output, int i) const
    {
        const int len = fkb_network_io_name(net_, is_output, i, nullptr, 0);
        if (len < 0) throw Error(FKB_ERR_ARGUMENT, "no such input/output");
        std::string name(static_cast<std::size_t>(len) + 1, '\0');
        fkb_network_io_name(net_, is_output, i, &name[0], name.size());
        name.resize(static_cast<std::size_t>(len));
        return name;
    }

    fkb_network *net_ = nullptr;
};


// ---- Custom layers ----------------------------------------------------------------------
//
//   struct Scale {                                   // a layer type: y = a * x
//       double a;
//       explicit Scale(fkb::LayerContext &ctx) : a(std::stod(ctx.option("a", "1"))) {}
//       template <class T>
//       void forward(const T *x, T *y, std::int64_t batch, fkb::Tensors<T> tensors) const
//       { /* batch samples of input_size values -> batch samples of the output size */ }
//   };
//   fkb::register_layer<Scale>("scale");             // before loading files that use it
//
// The constructor is `configure` (read options, declare tensors, set the output shape; throw
// to refuse the layer: the load fails with the exception's message); the destructor is
// `destroy`. forward is const and may run on many threads at once; throwing from it makes
// predict fail with FKB_ERR_LAYER and the message. An optional
//   template <class T> void backward(const T *x, const T *y, const T *dy, T *dx,
//       std::int64_t batch, fkb::Tensors<T> tensors, fkb::Grads<T> grads) const;
// (dx may be nullptr) makes the layer trainable. See fkb_layer_callbacks in fkb.h.

/// What a layer's constructor sees of the layer being loaded (valid during the constructor).
class LayerContext {
public:
    explicit LayerContext(fkb_layer_context *ctx) noexcept : ctx_(ctx) {}
    /// Whether the record has option key (reading it marks it used).
    bool has_option(const std::string &key) const
    {
        return fkb_layer_option(ctx_, key.c_str()) != nullptr;
    }
    /// The option's value; throws if the record does not have it.
    std::string option(const std::string &key) const
    {
        const char *v = fkb_layer_option(ctx_, key.c_str());
        if (v == nullptr) throw Error(FKB_ERR_FORMAT, "missing option '" + key + "'");
        return v;
    }
    /// The option's value, or fallback if the record does not have it.
    std::string option(const std::string &key, const std::string &fallback) const
    {
        const char *v = fkb_layer_option(ctx_, key.c_str());
        return v ? std::string(v) : fallback;
    }
    std::string name() const { return fkb_layer_name(ctx_); }
    std::int64_t input_size() const { return fkb_layer_input_size(ctx_); }
    std::vector<std::int64_t> input_shape() const
    {
        std::vector<std::int64_t> dims(static_cast<std::size_t>(
            fkb_layer_input_shape(ctx_, nullptr, 0)));
        fkb_layer_input_shape(ctx_, dims.data(), static_cast<int>(dims.size()));
        return dims;
    }
    fkb_dtype dtype() const { return static_cast<fkb_dtype>(fkb_layer_dtype(ctx_)); }
    void set_output_shape(const std::vector<std::int64_t> &dims)
    {
        if (fkb_layer_set_output_shape(ctx_, static_cast<int>(dims.size()), dims.data()) != FKB_OK)
            throw Error(FKB_ERR_SHAPE, "output shape refused");
    }
    /// Declares the next tensor of the layer (file order) with its Keras shape.
    void declare_tensor(const std::string &name, const std::vector<std::int64_t> &dims)
    {
        if (fkb_layer_declare_tensor(ctx_, name.c_str(), static_cast<int>(dims.size()),
                                     dims.data()) != FKB_OK)
            throw Error(FKB_ERR_ARGUMENT, "tensor '" + name + "' refused");
    }
    fkb_layer_context *handle() const noexcept { return ctx_; }

private:
    fkb_layer_context *ctx_;
};

/// The declared tensors of a layer in forward/backward: tensors[k] points to tensor k's data.
template <class T> struct Tensors {
    const void *const *p;
    const T *operator[](std::size_t k) const noexcept { return static_cast<const T *>(p[k]); }
};
/// The gradients in backward, one per tensor, same layout (overwrite, do not accumulate).
template <class T> struct Grads {
    void *const *p;
    T *operator[](std::size_t k) const noexcept { return static_cast<T *>(p[k]); }
};

namespace detail {
template <class L, class = void> struct has_backward : std::false_type {};
template <class L>
struct has_backward<L, std::void_t<decltype(std::declval<const L &>().backward(
                           std::declval<const double *>(), std::declval<const double *>(),
                           std::declval<const double *>(), std::declval<double *>(),
                           std::int64_t{}, std::declval<Tensors<double>>(),
                           std::declval<Grads<double>>()))>> : std::true_type {};

inline void copy_message(const char *what, char *error, std::size_t capacity) noexcept
{
    if (capacity == 0) return;
    std::size_t n = 0;
    for (; what[n] != '\0' && n + 1 < capacity; ++n) error[n] = what[n];
    error[n] = '\0';
}

template <class Layer> struct LayerTrampolines {
    static int configure(fkb_layer_context *ctx, void *, void **instance) noexcept
    {
        try {
            LayerContext context(ctx);
            *instance = new Layer(context);
            return 0;
        } catch (const std::exception &e) {
            fkb_layer_set_error(ctx, e.what());
        } catch (...) {
            fkb_layer_set_error(ctx, "unknown C++ exception");
        }
        return 1;
    }
    static int forward(void *instance, int dtype, const void *x, void *y, std::int64_t batch,
                       const void *const *tensors, char *error, std::size_t capacity) noexcept
    {
        try {
            const Layer &layer = *static_cast<const Layer *>(instance);
            if (dtype == FKB_FLOAT64)
                layer.forward(static_cast<const double *>(x), static_cast<double *>(y), batch,
                              Tensors<double>{tensors});
            else
                layer.forward(static_cast<const float *>(x), static_cast<float *>(y), batch,
                              Tensors<float>{tensors});
            return 0;
        } catch (const std::exception &e) {
            copy_message(e.what(), error, capacity);
        } catch (...) {
            copy_message("unknown C++ exception", error, capacity);
        }
        return 1;
    }
    static int backward(void *instance, int dtype, const void *x, const void *y, const void *dy,
                        void *dx, std::int64_t batch, const void *const *tensors,
                        void *const *grads, char *error, std::size_t capacity) noexcept
    {
        try {
            const Layer &layer = *static_cast<const Layer *>(instance);
            if (dtype == FKB_FLOAT64)
                layer.backward(static_cast<const double *>(x), static_cast<const double *>(y),
                               static_cast<const double *>(dy), static_cast<double *>(dx), batch,
                               Tensors<double>{tensors}, Grads<double>{grads});
            else
                layer.backward(static_cast<const float *>(x), static_cast<const float *>(y),
                               static_cast<const float *>(dy), static_cast<float *>(dx), batch,
                               Tensors<float>{tensors}, Grads<float>{grads});
            return 0;
        } catch (const std::exception &e) {
            copy_message(e.what(), error, capacity);
        } catch (...) {
            copy_message("unknown C++ exception", error, capacity);
        }
        return 1;
    }
    static void destroy(void *instance) noexcept { delete static_cast<Layer *>(instance); }
};
} // namespace detail

/// Registers the C++ class Layer as the layer type `type_name` (see above); throws fkb::Error
/// if the name is refused (not [a-z0-9_]+, or a built-in type's).
template <class Layer> void register_layer(const std::string &type_name)
{
    using T = detail::LayerTrampolines<Layer>;
    fkb_layer_callbacks callbacks{};
    callbacks.configure = &T::configure;
    callbacks.forward = &T::forward;
    callbacks.destroy = &T::destroy;
    if constexpr (detail::has_backward<Layer>::value) callbacks.backward = &T::backward;
    detail::check(fkb_register_layer_callbacks(type_name.c_str(), &callbacks, nullptr));
}

} // namespace fkb

#endif // FKB_FKB_HPP
