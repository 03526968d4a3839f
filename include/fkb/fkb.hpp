// FKB C++ interface: a header-only RAII wrapper over the C API (fkb.h).
//
//   fkb::Network net("model.fkb");                 // throws fkb::Error on failure
//   std::vector<float> y = net.predict(x, batch);  // x: batch * n_inputs() values
//
// Thread safety is that of the C handle: predict and the queries may run concurrently on one
// Network; load, save, set_tensor and destruction need exclusive access.
#ifndef FKB_FKB_HPP
#define FKB_FKB_HPP

#include <cstdint>
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

} // namespace fkb

#endif // FKB_FKB_HPP
