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

    /// The C handle, for calls this wrapper does not cover; still owned by this object.
    fkb_network *handle() const noexcept { return net_; }

private:
    fkb_network *net_ = nullptr;
};

} // namespace fkb

#endif // FKB_FKB_HPP
