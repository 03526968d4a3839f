// fkb._core: the Python extension over the FKB C API (include/fkb/fkb.h), and nothing else.
//
// One class, Network, owns an fkb_network*. Failing C calls raise the exception class that
// fkb._errors.STATUS_CLASSES maps the status to, with fkb_last_error()'s text. The GIL is
// released around load, save and predict; a shared mutex per network lets predictions run
// concurrently while set_tensor, save and the training calls (compile, train_on_batch,
// evaluate, gradients) get the exclusive access the C API asks for.

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <sstream>
#include <string>
#include <vector>

#include "fkb/fkb.h"

namespace py = pybind11;

namespace {

// Raises the fkb._errors class of `status` with `message`.
[[noreturn]] void raise_error(int status, const std::string &message) {
    py::module_ errors = py::module_::import("fkb._errors");
    py::object cls = errors.attr("STATUS_CLASSES").attr("get")(status, errors.attr("FKBError"));
    PyErr_SetString(cls.ptr(), message.c_str());
    throw py::error_already_set();
}

// Raises for a failed C call (called on the thread that made the call).
[[noreturn]] void raise_status(fkb_status status) {
    const char *detail = fkb_last_error();
    std::string message = (detail != nullptr && detail[0] != '\0')
                              ? std::string(detail)
                              : std::string(fkb_status_string(status));
    raise_error(static_cast<int>(status), message);
}

// Sizes of the tensors, from the `tensor NAME DTYPE D1,D2,...` lines of a description.
std::vector<int64_t> tensor_sizes(const char *description) {
    std::vector<int64_t> sizes;
    std::istringstream lines(description != nullptr ? description : "");
    std::string line;
    while (std::getline(lines, line)) {
        if (line.rfind("tensor ", 0) != 0) continue;
        std::istringstream fields(line);
        std::string rec, name, dtype, shape;
        fields >> rec >> name >> dtype >> shape;
        int64_t size = 1;
        std::istringstream dims(shape);
        std::string dim;
        while (std::getline(dims, dim, ',')) size *= std::stoll(dim);
        sizes.push_back(size);
    }
    return sizes;
}

class Network {
public:
    explicit Network(const std::string &path) {
        fkb_status status;
        {
            py::gil_scoped_release release;
            status = fkb_network_load(path.c_str(), &net_);
        }
        if (status != FKB_OK) raise_status(status);
        sizes_ = tensor_sizes(fkb_network_description(net_));
    }
    ~Network() { fkb_network_free(&net_); }
    Network(const Network &) = delete;
    Network &operator=(const Network &) = delete;

    void save(const std::string &path) const {
        fkb_status status;
        {
            py::gil_scoped_release release;
            std::unique_lock<std::shared_mutex> lock(mutex_);
            status = fkb_network_save(net_, path.c_str());
        }
        if (status != FKB_OK) raise_status(status);
    }

    void save_legacy(const std::string &path) const {
        fkb_status status;
        {
            py::gil_scoped_release release;
            std::unique_lock<std::shared_mutex> lock(mutex_);
            status = fkb_network_save_legacy(net_, path.c_str());
        }
        if (status != FKB_OK) raise_status(status);
    }

    int64_t n_inputs() const { return fkb_network_n_inputs(net_); }
    int64_t n_outputs() const { return fkb_network_n_outputs(net_); }

    std::string dtype() const {
        switch (fkb_network_dtype(net_)) {
            case FKB_FLOAT32: return "float32";
            case FKB_FLOAT64: return "float64";
            default: raise_error(FKB_ERR_INTERNAL, "network has an unknown dtype");
        }
    }

    std::string description() const {
        const char *text = fkb_network_description(net_);
        return text != nullptr ? std::string(text) : std::string();
    }

    int64_t n_tensors() const { return fkb_network_n_tensors(net_); }

    py::array_t<double> get_tensor(int64_t index) const {
        const int64_t count = tensor_size(index);
        py::array_t<double> out(static_cast<py::ssize_t>(count));
        fkb_status status;
        {
            py::gil_scoped_release release;
            std::shared_lock<std::shared_mutex> lock(mutex_);
            status = fkb_network_get_tensor(net_, index, out.mutable_data(), count);
        }
        if (status != FKB_OK) raise_status(status);
        return out;
    }

    void set_tensor(int64_t index, py::handle values) {
        const int64_t count = tensor_size(index);
        auto a = py::array_t<double, py::array::c_style | py::array::forcecast>::ensure(values);
        if (!a) throw py::error_already_set();
        if (a.size() != count) {
            raise_error(FKB_ERR_SHAPE, "tensor " + std::to_string(index) + " has " +
                                           std::to_string(count) + " values, " +
                                           std::to_string(a.size()) + " given");
        }
        fkb_status status;
        {
            py::gil_scoped_release release;
            std::unique_lock<std::shared_mutex> lock(mutex_);
            status = fkb_network_set_tensor(net_, index, a.data(), count);
        }
        if (status != FKB_OK) raise_status(status);
    }

    py::array predict(py::handle x_in) const {
        py::array x = py::array::ensure(x_in);
        if (!x) {
            PyErr_Clear();
            raise_error(FKB_ERR_ARGUMENT, "predict: input is not an array-like of numbers");
        }
        const char kind = x.dtype().kind();
        const auto itemsize = x.dtype().itemsize();
        bool use_f32;
        if (kind == 'f' && itemsize == 4) {
            use_f32 = true;
        } else if (kind == 'f' && itemsize == 8) {
            use_f32 = false;
        } else if (kind == 'f' || kind == 'i' || kind == 'u' || kind == 'b') {
            use_f32 = fkb_network_dtype(net_) == FKB_FLOAT32;  // converted to the model's dtype
        } else {
            raise_error(FKB_ERR_ARGUMENT,
                        std::string("predict: input of non-numeric dtype '") +
                            std::string(py::str(x.dtype())) +
                            "'; give float32 or float64 (integers and booleans are converted)");
        }
        return use_f32 ? run<float>(x) : run<double>(x);
    }

    // ---- several inputs/outputs (format 1.2) ----

    std::vector<std::vector<int64_t>> io_shapes(int is_output) const {
        const int count = is_output ? fkb_network_output_count(net_) : fkb_network_input_count(net_);
        std::vector<std::vector<int64_t>> shapes;
        for (int i = 0; i < count; ++i) {
            const int rank = fkb_network_io_shape(net_, is_output, i, nullptr, 0);
            std::vector<int64_t> dims(static_cast<size_t>(std::max(rank, 0)));
            fkb_network_io_shape(net_, is_output, i, dims.data(), rank);
            shapes.push_back(dims);
        }
        return shapes;
    }

    std::vector<std::string> io_names(int is_output) const {
        const int count = is_output ? fkb_network_output_count(net_) : fkb_network_input_count(net_);
        std::vector<std::string> names;
        for (int i = 0; i < count; ++i) {
            const int len = fkb_network_io_name(net_, is_output, i, nullptr, 0);
            std::string buf(static_cast<size_t>(len) + 1, '\0');
            fkb_network_io_name(net_, is_output, i, buf.data(), buf.size());
            buf.resize(static_cast<size_t>(len));
            names.push_back(buf);
        }
        return names;
    }

    // xs: one 2-D array (batch, values per sample) per input; returns one per output. float32
    // host arrays if every input is float32, else float64 (inputs converted, as predict does).
    py::list predict_multi(const py::list &xs_in, py::object state_obj) const;

    // ---- training (fkb.h "Training"): exclusive access, GIL released ----

    void compile(const std::string &optimizer, const std::string &loss) {
        fkb_status status;
        {
            py::gil_scoped_release release;
            std::unique_lock<std::shared_mutex> lock(mutex_);
            status = fkb_network_compile(net_, optimizer.c_str(), loss.c_str());
        }
        if (status != FKB_OK) raise_status(status);
        set_targets(loss);
    }

    // A Python custom loss: fn(y_pred, y_true, sample_weight) -> (loss, grad), numpy float64
    // arrays (batch, n_outputs); sample_weight is None or (batch,). Called with the GIL held.
    void compile_custom(const std::string &optimizer, py::object fn) {
        custom_ = fn;
        fkb_status status;
        {
            py::gil_scoped_release release;
            std::unique_lock<std::shared_mutex> lock(mutex_);
            status = fkb_network_compile_custom(net_, optimizer.c_str(), &custom_trampoline, this);
        }
        if (status != FKB_OK) raise_status(status);
        set_targets("custom");
    }

    void set_custom_loss(py::object fn) {
        custom_ = fn;
        std::unique_lock<std::shared_mutex> lock(mutex_);
        fkb_status status = fkb_network_set_custom_loss(net_, &custom_trampoline, this);
        if (status != FKB_OK) raise_status(status);
        set_targets("custom");
    }

    double train_on_batch(py::handle x, py::handle y, py::handle sample_weight) {
        Batch b = batch_args("train_on_batch", x, y, sample_weight);
        double loss = 0.0;
        fkb_status status;
        {
            py::gil_scoped_release release;
            std::unique_lock<std::shared_mutex> lock(mutex_);
            status = fkb_network_train_on_batch(net_, b.x.data(), b.y.data(), b.batch, b.w_ptr(),
                                                &loss);
        }
        if (status != FKB_OK && !custom_error_.empty()) {
            std::string why = custom_error_;
            custom_error_.clear();
            raise_error(status, std::string(fkb_last_error()) + ": " + why);
        }
        if (status != FKB_OK) raise_status(status);
        return loss;
    }

    double evaluate(py::handle x, py::handle y, py::handle sample_weight) {
        Batch b = batch_args("evaluate", x, y, sample_weight);
        double loss = 0.0;
        fkb_status status;
        {
            py::gil_scoped_release release;
            std::unique_lock<std::shared_mutex> lock(mutex_);
            status = fkb_network_evaluate(net_, b.x.data(), b.y.data(), b.batch, b.w_ptr(), &loss);
        }
        if (status != FKB_OK) raise_status(status);
        return loss;
    }

    // (loss, gradient of every tensor concatenated in tensor order, as float64).
    py::tuple gradients(py::handle x, py::handle y, py::handle sample_weight) {
        Batch b = batch_args("gradients", x, y, sample_weight);
        int64_t count = 0;
        for (int64_t s : sizes_) count += s;
        py::array_t<double> grads(static_cast<py::ssize_t>(count));
        double *gp = grads.mutable_data();
        double loss = 0.0;
        fkb_status status;
        {
            py::gil_scoped_release release;
            std::unique_lock<std::shared_mutex> lock(mutex_);
            status = fkb_network_gradients(net_, b.x.data(), b.y.data(), b.batch, b.w_ptr(), &loss,
                                           gp, count);
        }
        if (status != FKB_OK) raise_status(status);
        return py::make_tuple(loss, grads);
    }

    // Several inputs/outputs: xs one (batch, values per sample) array per input, ts one
    // (batch, n_targets(k)) array per output; mode 1 train, 2 gradients, 3 evaluate. Returns
    // (loss, gradients or None).
    py::tuple train_multi(int mode, const py::list &xs_in, const py::list &ts_in,
                          py::handle sample_weight) {
        const char *where = mode == 1 ? "train_on_batch" : mode == 2 ? "gradients" : "evaluate";
        if (n_targets_ < 0) {
            raise_error(FKB_ERR_ARGUMENT, std::string(where) +
                                              ": the network is not compiled; call compile("
                                              "optimizer, loss) first");
        }
        std::vector<f64_array> xs, ts;
        std::vector<const double *> xp, tp;
        int64_t batch = -1;
        for (py::ssize_t k = 0; k < static_cast<py::ssize_t>(xs_in.size()); ++k) {
            xs.push_back(as_f64(where, "x", xs_in[k]));
            const f64_array &a = xs.back();
            const int64_t width = fkb_network_input_size(net_, static_cast<int>(k));
            if (a.ndim() != 2 || a.shape(1) != width) {
                raise_error(FKB_ERR_SHAPE, std::string(where) + ": input " + std::to_string(k) +
                                               " must be (batch, " + std::to_string(width) + ")");
            }
            if (batch >= 0 && a.shape(0) != batch) {
                raise_error(FKB_ERR_SHAPE, std::string(where) +
                                               ": the inputs have different batch sizes");
            }
            batch = a.shape(0);
            xp.push_back(a.data());
        }
        if (batch < 1) raise_error(FKB_ERR_ARGUMENT, std::string(where) + ": empty batch");
        for (py::ssize_t k = 0; k < static_cast<py::ssize_t>(ts_in.size()); ++k) {
            ts.push_back(as_f64(where, "y", ts_in[k]));
            const f64_array &a = ts.back();
            const int64_t width = fkb_network_n_targets(net_, static_cast<int>(k));
            if (a.size() != batch * width) {
                raise_error(FKB_ERR_SHAPE,
                            std::string(where) + ": targets " + std::to_string(k) + " have " +
                                std::to_string(a.size()) + " values, expected " +
                                std::to_string(batch * width) + " (" + std::to_string(batch) +
                                " samples x " + std::to_string(width) + " targets)");
            }
            tp.push_back(a.data());
        }
        f64_array w;
        const double *wp = nullptr;
        if (!sample_weight.is_none()) {
            w = as_f64(where, "sample_weight", sample_weight);
            if (w.size() != batch) {
                raise_error(FKB_ERR_SHAPE, std::string(where) + ": sample_weight has " +
                                               std::to_string(w.size()) + " values for " +
                                               std::to_string(batch) + " samples");
            }
            wp = w.data();
        }
        int64_t count = 0;
        for (int64_t s : sizes_) count += s;
        py::array_t<double> grads(static_cast<py::ssize_t>(mode == 2 ? count : 0));
        double *gp = grads.mutable_data();
        double loss = 0.0;
        fkb_status status;
        {
            py::gil_scoped_release release;
            std::unique_lock<std::shared_mutex> lock(mutex_);
            const int n_in = static_cast<int>(xp.size()), n_out = static_cast<int>(tp.size());
            if (mode == 1) {
                status = fkb_network_train_on_batch_multi(net_, n_in, xp.data(), batch, n_out,
                                                          tp.data(), wp, &loss);
            } else if (mode == 2) {
                status = fkb_network_gradients_multi(net_, n_in, xp.data(), batch, n_out,
                                                     tp.data(), wp, &loss, gp, count);
            } else {
                status = fkb_network_evaluate_multi(net_, n_in, xp.data(), batch, n_out,
                                                    tp.data(), wp, &loss);
            }
        }
        if (status != FKB_OK && !custom_error_.empty()) {
            std::string why = custom_error_;
            custom_error_.clear();
            raise_error(status, std::string(fkb_last_error()) + ": " + why);
        }
        if (status != FKB_OK) raise_status(status);
        if (mode == 2) return py::make_tuple(loss, grads);
        return py::make_tuple(loss, py::none());
    }

    // Targets per sample of output k for the compiled loss.
    int64_t n_targets_of(int k) const { return fkb_network_n_targets(net_, k); }

    int64_t iterations() const { return fkb_network_iterations(net_); }

    // A file saved by a compiled network loads compiled (format 1.1); the package reads its
    // loss record and passes it here, since the C API has no query for it.
    void loaded_compiled(const std::string &loss) { set_targets(loss); }

    bool is_compiled() const { return n_targets_ >= 0; }

    int64_t n_targets() const { return n_targets_ >= 0 ? n_targets_ : n_outputs(); }

private:
    static int custom_trampoline(const double *y, const double *t, int64_t n_out, int64_t batch,
                                 const double *w, double *loss, double *grad, void *user) {
        auto *self = static_cast<Network *>(user);
        py::gil_scoped_acquire gil;
        try {
            std::vector<py::ssize_t> shape{static_cast<py::ssize_t>(batch),
                                           static_cast<py::ssize_t>(n_out)};
            py::array_t<double> ya(shape), ta(shape);
            std::copy(y, y + batch * n_out, ya.mutable_data());
            std::copy(t, t + batch * n_out, ta.mutable_data());
            py::object wa = py::none();
            if (w != nullptr) {
                py::array_t<double> wv(static_cast<py::ssize_t>(batch));
                std::copy(w, w + batch, wv.mutable_data());
                wa = wv;
            }
            py::tuple r = self->custom_(ya, ta, wa).cast<py::tuple>();
            if (r.size() != 2) throw std::runtime_error("must return (loss, gradient)");
            auto g = py::array_t<double, py::array::c_style | py::array::forcecast>::ensure(r[1]);
            if (!g || g.size() != batch * n_out) {
                throw std::runtime_error("the gradient must have the shape of y_pred");
            }
            *loss = r[0].cast<double>();
            std::copy(g.data(), g.data() + batch * n_out, grad);
            return 0;
        } catch (std::exception &e) {
            self->custom_error_ = e.what();
            PyErr_Clear();
            return 1;
        }
    }

    py::object custom_;        // the Python custom loss, kept alive while compiled
    std::string custom_error_;  // what it raised last

    // y holds one class index per sample for sparse categorical crossentropy.
    void set_targets(const std::string &loss) {
        std::istringstream words(loss);
        std::string name;
        words >> name;
        n_targets_ = name == "sparse_categorical_crossentropy" ? 1 : n_outputs();
    }

    using f64_array = py::array_t<double, py::array::c_style | py::array::forcecast>;

    // A training batch as the C API takes it: float64, samples contiguous, sizes checked here
    // (the C API trusts its pointers to hold batch * width values).
    struct Batch {
        f64_array x, y, w;  // (a default array_t is an empty array, not a null handle)
        int64_t batch = 0;
        bool has_w = false;
        const double *w_ptr() const { return has_w ? w.data() : nullptr; }
    };

    static f64_array as_f64(const char *where, const char *what, py::handle h) {
        auto a = f64_array::ensure(h);
        if (!a) {
            PyErr_Clear();
            raise_error(FKB_ERR_ARGUMENT, std::string(where) + ": " + what +
                                              " is not an array-like of numbers");
        }
        return a;
    }

    Batch batch_args(const char *where, py::handle x, py::handle y, py::handle sample_weight) {
        if (n_targets_ < 0) {
            raise_error(FKB_ERR_ARGUMENT, std::string(where) +
                                              ": the network is not compiled; call compile("
                                              "optimizer, loss) first");
        }
        Batch b;
        b.x = as_f64(where, "x", x);
        const int64_t n_in = n_inputs();
        if (b.x.ndim() != 2 || b.x.shape(1) != n_in) {
            std::string got = "(";
            for (py::ssize_t k = 0; k < b.x.ndim(); ++k) {
                got += (k ? ", " : "") + std::to_string(b.x.shape(k));
            }
            got += b.x.ndim() == 1 ? ",)" : ")";
            raise_error(FKB_ERR_SHAPE, std::string(where) + ": x has shape " + got +
                                           ", expected (batch, " + std::to_string(n_in) + ")");
        }
        b.batch = b.x.shape(0);
        if (b.batch < 1) raise_error(FKB_ERR_ARGUMENT, std::string(where) + ": empty batch");
        b.y = as_f64(where, "y", y);
        if (b.y.size() != b.batch * n_targets_) {
            raise_error(FKB_ERR_SHAPE,
                        std::string(where) + ": y has " + std::to_string(b.y.size()) +
                            " values, expected " + std::to_string(b.batch * n_targets_) + " (" +
                            std::to_string(b.batch) + " samples x " +
                            std::to_string(n_targets_) + " targets)");
        }
        if (!sample_weight.is_none()) {
            b.w = as_f64(where, "sample_weight", sample_weight);
            b.has_w = true;
            if (b.w.size() != b.batch) {
                raise_error(FKB_ERR_SHAPE, std::string(where) + ": sample_weight has " +
                                               std::to_string(b.w.size()) + " values for " +
                                               std::to_string(b.batch) + " samples");
            }
        }
        return b;
    }

    int64_t tensor_size(int64_t index) const {
        if (index < 0 || index >= static_cast<int64_t>(sizes_.size())) {
            raise_error(FKB_ERR_ARGUMENT, "tensor index " + std::to_string(index) +
                                              " out of range [0, " +
                                              std::to_string(sizes_.size()) + ")");
        }
        return sizes_[static_cast<size_t>(index)];
    }

    template <typename T>
    py::array run(const py::array &x_any) const {
        // No copy when x is already C-contiguous, aligned, native T.
        auto x = py::array_t<T, py::array::c_style | py::array::forcecast>::ensure(x_any);
        if (!x) throw py::error_already_set();
        const int64_t n_in = n_inputs(), n_out = n_outputs();
        const auto ndim = x.ndim();
        if (ndim != 1 && ndim != 2) {
            raise_error(FKB_ERR_SHAPE, "predict: input of rank " + std::to_string(ndim) +
                                           "; expected (batch, " + std::to_string(n_in) +
                                           ") or (" + std::to_string(n_in) + ",)");
        }
        const int64_t width = x.shape(ndim - 1);
        if (width != n_in) {
            raise_error(FKB_ERR_SHAPE, "predict: input width " + std::to_string(width) +
                                           ", the network takes " + std::to_string(n_in));
        }
        const int64_t batch = ndim == 2 ? x.shape(0) : 1;
        py::array_t<T> y = ndim == 2 ? py::array_t<T>({static_cast<py::ssize_t>(batch),
                                                       static_cast<py::ssize_t>(n_out)})
                                     : py::array_t<T>(static_cast<py::ssize_t>(n_out));
        if (batch == 0) return std::move(y);
        const T *xp = x.data();
        T *yp = y.mutable_data();
        fkb_status status;
        {
            py::gil_scoped_release release;
            std::shared_lock<std::shared_mutex> lock(mutex_);
            if constexpr (std::is_same_v<T, float>) {
                status = fkb_network_predict(net_, xp, batch, yp);
            } else {
                status = fkb_network_predict_f64(net_, xp, batch, yp);
            }
        }
        if (status != FKB_OK) raise_status(status);
        return std::move(y);
    }

    fkb_network *net_ = nullptr;
    std::vector<int64_t> sizes_;
    int64_t n_targets_ = -1;  // values of y per sample once compiled; -1 before compile
    mutable std::shared_mutex mutex_;
};

// An fkb_rnn_state*: recurrent state carried between predict calls (one per sequence).
class RnnState {
public:
    RnnState() : state_(fkb_rnn_state_create()) {
        if (state_ == nullptr) raise_error(FKB_ERR_MEMORY, "cannot allocate a recurrent state");
    }
    ~RnnState() { fkb_rnn_state_free(&state_); }
    RnnState(const RnnState &) = delete;
    RnnState &operator=(const RnnState &) = delete;
    void reset() { fkb_rnn_state_reset(state_); }
    fkb_rnn_state *get() const { return state_; }

private:
    fkb_rnn_state *state_;
};

template <typename T>
py::list predict_multi_as(fkb_network *net, std::shared_mutex &mutex, const py::list &xs_in,
                          fkb_rnn_state *state) {
    const int n_in = fkb_network_input_count(net), n_out = fkb_network_output_count(net);
    if (static_cast<int>(py::len(xs_in)) != n_in) {
        raise_error(FKB_ERR_ARGUMENT, "predict: the network has " + std::to_string(n_in) +
                                          " input(s), got " + std::to_string(py::len(xs_in)));
    }
    std::vector<py::array_t<T, py::array::c_style | py::array::forcecast>> xs;
    std::vector<const T *> xp;
    int64_t batch = -1;
    for (int k = 0; k < n_in; ++k) {
        auto x = py::array_t<T, py::array::c_style | py::array::forcecast>::ensure(xs_in[k]);
        if (!x) throw py::error_already_set();
        const int64_t size = fkb_network_input_size(net, k);
        if (x.ndim() != 2 || x.shape(1) != size) {
            raise_error(FKB_ERR_SHAPE, "predict: input " + std::to_string(k) +
                                           " must be (batch, " + std::to_string(size) + ")");
        }
        if (batch >= 0 && x.shape(0) != batch) {
            raise_error(FKB_ERR_SHAPE, "predict: every input must have the same batch size");
        }
        batch = x.shape(0);
        xp.push_back(x.data());
        xs.push_back(std::move(x));
    }
    py::list out;
    std::vector<T *> yp;
    for (int k = 0; k < n_out; ++k) {
        py::array_t<T> y({static_cast<py::ssize_t>(batch),
                          static_cast<py::ssize_t>(fkb_network_output_size(net, k))});
        yp.push_back(y.mutable_data());
        out.append(y);
    }
    if (batch == 0) return out;
    fkb_status status;
    {
        py::gil_scoped_release release;
        std::shared_lock<std::shared_mutex> lock(mutex);
        if constexpr (std::is_same_v<T, float>) {
            status = fkb_network_predict_multi(net, n_in, xp.data(), batch, n_out, yp.data(),
                                               state);
        } else {
            status = fkb_network_predict_multi_f64(net, n_in, xp.data(), batch, n_out,
                                                   yp.data(), state);
        }
    }
    if (status != FKB_OK) raise_status(status);
    return out;
}

py::list Network::predict_multi(const py::list &xs_in, py::object state_obj) const {
    fkb_rnn_state *state = nullptr;
    if (!state_obj.is_none()) state = state_obj.cast<RnnState &>().get();
    bool all_f32 = py::len(xs_in) > 0;
    for (auto item : xs_in) {
        py::array a = py::array::ensure(item);
        if (!a) {
            PyErr_Clear();
            raise_error(FKB_ERR_ARGUMENT, "predict: inputs must be array-likes of numbers");
        }
        all_f32 = all_f32 && a.dtype().kind() == 'f' && a.dtype().itemsize() == 4;
    }
    return all_f32 ? predict_multi_as<float>(net_, mutex_, xs_in, state)
                   : predict_multi_as<double>(net_, mutex_, xs_in, state);
}

// An fkb_ensemble*: float64 host arrays only (statistics are double precision anyway).
class Ensemble {
public:
    static Ensemble from_paths(const std::vector<std::string> &paths, py::object weights) {
        std::vector<const char *> c_paths;
        for (const auto &p : paths) c_paths.push_back(p.c_str());
        std::vector<double> w;
        if (!weights.is_none()) w = weights.cast<std::vector<double>>();
        if (!weights.is_none() && w.size() != paths.size()) {
            raise_error(FKB_ERR_ARGUMENT, std::to_string(w.size()) + " weights for " +
                                              std::to_string(paths.size()) + " members");
        }
        Ensemble e;
        fkb_status status;
        {
            py::gil_scoped_release release;
            status = fkb_ensemble_load(c_paths.data(), static_cast<int64_t>(c_paths.size()),
                                       w.empty() ? nullptr : w.data(), &e.ens_);
        }
        if (status != FKB_OK) raise_status(status);
        return e;
    }
    static Ensemble from_directory(const std::string &dir) {
        Ensemble e;
        fkb_status status = fkb_ensemble_load_directory(dir.c_str(), &e.ens_);
        if (status != FKB_OK) raise_status(status);
        return e;
    }
    static Ensemble from_manifest(const std::string &path) {
        Ensemble e;
        fkb_status status = fkb_ensemble_load_manifest(path.c_str(), &e.ens_);
        if (status != FKB_OK) raise_status(status);
        return e;
    }
    Ensemble() = default;
    Ensemble(Ensemble &&o) noexcept : ens_(o.ens_) { o.ens_ = nullptr; }
    Ensemble(const Ensemble &) = delete;
    ~Ensemble() { fkb_ensemble_free(&ens_); }

    int64_t n_members() const { return fkb_ensemble_n_members(ens_); }
    int64_t n_inputs() const { return fkb_ensemble_n_inputs(ens_); }
    int64_t n_outputs() const { return fkb_ensemble_n_outputs(ens_); }

    void set_noise(const std::vector<double> &std, int64_t copies, uint64_t seed) {
        std::unique_lock<std::shared_mutex> lock(mutex_);
        fkb_status status = fkb_ensemble_set_noise(ens_, std.data(),
                                                   static_cast<int64_t>(std.size()), copies, seed);
        if (status != FKB_OK) raise_status(status);
    }

    void set_mc_dropout(bool on, int64_t copies, uint64_t seed) {
        std::unique_lock<std::shared_mutex> lock(mutex_);
        fkb_status status = fkb_ensemble_set_mc_dropout(ens_, on ? 1 : 0, copies, seed);
        if (status != FKB_OK) raise_status(status);
    }

    // Returns (mean, std, minimum, maximum); the last three are None unless asked for.
    py::tuple predict(const py::array_t<double, py::array::c_style | py::array::forcecast> &x,
                      bool with_std, bool with_range) const {
        const int64_t batch = check_input(x);
        auto shape = std::vector<py::ssize_t>{static_cast<py::ssize_t>(batch),
                                              static_cast<py::ssize_t>(n_outputs())};
        py::array_t<double> mean(shape);
        py::object std_o = py::none(), lo_o = py::none(), hi_o = py::none();
        double *sp = nullptr, *lp = nullptr, *hp = nullptr;
        if (with_std) {
            py::array_t<double> a(shape);
            sp = a.mutable_data();
            std_o = a;
        }
        if (with_range) {
            py::array_t<double> a(shape), b(shape);
            lp = a.mutable_data();
            hp = b.mutable_data();
            lo_o = a;
            hi_o = b;
        }
        const double *xp = x.data();
        double *mp = mean.mutable_data();
        fkb_status status;
        {
            py::gil_scoped_release release;
            std::shared_lock<std::shared_mutex> lock(mutex_);
            status = fkb_ensemble_predict(ens_, xp, batch, mp, sp, lp, hp);
        }
        if (status != FKB_OK) raise_status(status);
        return py::make_tuple(mean, std_o, lo_o, hi_o);
    }

    py::array predict_members(
        const py::array_t<double, py::array::c_style | py::array::forcecast> &x) const {
        const int64_t batch = check_input(x);
        py::array_t<double> out({static_cast<py::ssize_t>(n_members()),
                                 static_cast<py::ssize_t>(batch),
                                 static_cast<py::ssize_t>(n_outputs())});
        const double *xp = x.data();
        double *op = out.mutable_data();
        fkb_status status;
        {
            py::gil_scoped_release release;
            std::shared_lock<std::shared_mutex> lock(mutex_);
            status = fkb_ensemble_predict_members(ens_, xp, batch, op);
        }
        if (status != FKB_OK) raise_status(status);
        return std::move(out);
    }

private:
    int64_t check_input(const py::array_t<double, py::array::c_style | py::array::forcecast> &x) const {
        if (x.ndim() != 2 || x.shape(1) != n_inputs()) {
            raise_error(FKB_ERR_SHAPE, "ensemble input must be (batch, " +
                                           std::to_string(n_inputs()) + ")");
        }
        if (x.shape(0) < 1) raise_error(FKB_ERR_ARGUMENT, "batch size must be at least 1");
        return x.shape(0);
    }

    fkb_ensemble *ens_ = nullptr;
    mutable std::shared_mutex mutex_;
};

// ---- Layer types registered from Python (fkb.register_layer with forward) ----------------
//
// The engine calls these C callbacks (fkb_register_layer_callbacks); they take the GIL and call
// fkb._engine_layers: configure(type_name, LayerContext) -> callable fn(x, weights) -> y, which
// the forward callback runs on numpy views of the engine's arrays. A Python exception fails
// the load (configure) or the predict call (forward: FKB_ERR_LAYER, fkb.LayerError) with its
// message.

// What configure sees (fkb_layer_context), valid only during the configure call.
class LayerContext {
public:
    explicit LayerContext(fkb_layer_context *ctx) : ctx_(ctx) {}
    void invalidate() { ctx_ = nullptr; }

    py::object option(const std::string &key) {
        const char *v = fkb_layer_option(get(), key.c_str());
        if (v == nullptr) return py::none();
        return py::str(v);
    }
    std::string name() { return fkb_layer_name(get()); }
    std::vector<int64_t> input_shape() {
        const int rank = fkb_layer_input_shape(get(), nullptr, 0);
        std::vector<int64_t> dims(static_cast<size_t>(std::max(rank, 0)));
        fkb_layer_input_shape(get(), dims.data(), rank);
        return dims;
    }
    std::string dtype() { return fkb_layer_dtype(get()) == FKB_FLOAT32 ? "float32" : "float64"; }
    void set_output_shape(const std::vector<int64_t> &dims) {
        fkb_status st = fkb_layer_set_output_shape(get(), static_cast<int>(dims.size()),
                                                   dims.data());
        if (st != FKB_OK) raise_error(st, "set_output_shape refused");
        out_shape = dims;
    }
    void declare_tensor(const std::string &tname, const std::vector<int64_t> &dims) {
        fkb_status st = fkb_layer_declare_tensor(get(), tname.c_str(),
                                                 static_cast<int>(dims.size()), dims.data());
        if (st != FKB_OK) raise_error(st, "declare_tensor('" + tname + "') refused");
        tensors.push_back(dims);
    }

    std::vector<int64_t> out_shape;             // empty: the input's
    std::vector<std::vector<int64_t>> tensors;  // declared shapes, in order

private:
    fkb_layer_context *get() {
        if (ctx_ == nullptr) {
            raise_error(FKB_ERR_ARGUMENT, "a LayerContext is only valid during configure");
        }
        return ctx_;
    }
    fkb_layer_context *ctx_;
};

struct PyLayer {
    py::object fn;  // fn(x, weights) -> y
    std::vector<py::ssize_t> in_shape, out_shape;
    std::vector<std::vector<py::ssize_t>> tensor_shapes;
    int64_t out_size = 1;
};

// "ExceptionType: message" of the Python error being handled (the traceback left out).
std::string python_error_text(py::error_already_set &e) {
    std::string text;
    try {
        text = py::str(e.type().attr("__name__")).cast<std::string>();
        std::string value = py::str(e.value()).cast<std::string>();
        if (!value.empty()) text += ": " + value;
    } catch (...) {
        text = "Python error";
    }
    return text;
}

bool python_alive() {
#if PY_VERSION_HEX >= 0x030D0000
    return Py_IsInitialized() && !Py_IsFinalizing();
#else
    return Py_IsInitialized() && !_Py_IsFinalizing();
#endif
}

int py_layer_configure(fkb_layer_context *ctx, void *user_data, void **instance) {
    const auto *type_name = static_cast<const std::string *>(user_data);
    if (!python_alive()) return 1;
    py::gil_scoped_acquire gil;
    auto *holder = new LayerContext(ctx);
    py::object ctx_obj = py::cast(holder, py::return_value_policy::take_ownership);
    try {
        py::object fn = py::module_::import("fkb._engine_layers").attr("configure")(*type_name,
                                                                                   ctx_obj);
        auto *layer = new PyLayer();
        layer->fn = fn;
        const auto in = holder->input_shape();
        layer->in_shape.assign(in.begin(), in.end());
        const auto &out = holder->out_shape.empty() ? in : holder->out_shape;
        layer->out_shape.assign(out.begin(), out.end());
        for (auto d : out) layer->out_size *= d;
        for (const auto &t : holder->tensors) layer->tensor_shapes.emplace_back(t.begin(), t.end());
        holder->invalidate();
        *instance = layer;
        return 0;
    } catch (py::error_already_set &e) {
        std::string msg = python_error_text(e);
        holder->invalidate();
        fkb_layer_set_error(ctx, msg.c_str());
        return 1;
    } catch (std::exception &e) {
        holder->invalidate();
        fkb_layer_set_error(ctx, e.what());
        return 1;
    }
}

void write_error(char *error, size_t capacity, const std::string &msg) {
    if (error == nullptr || capacity == 0) return;
    const size_t n = std::min(msg.size(), capacity - 1);
    std::copy(msg.data(), msg.data() + n, error);
    error[n] = '\0';
}

template <typename T>
void run_py_layer(PyLayer *layer, const void *x, void *y, int64_t batch,
                  const void *const *tensors) {
    auto view = [](const std::vector<py::ssize_t> &shape, const void *ptr) {
        py::array a(py::dtype::of<T>(), shape, ptr, py::none());  // no copy (base given)
        a.attr("flags").attr("writeable") = false;
        return a;
    };
    std::vector<py::ssize_t> xs{static_cast<py::ssize_t>(batch)};
    xs.insert(xs.end(), layer->in_shape.begin(), layer->in_shape.end());
    py::list weights;
    for (size_t k = 0; k < layer->tensor_shapes.size(); ++k) {
        weights.append(view(layer->tensor_shapes[k], tensors[k]));
    }
    py::object r = layer->fn(view(xs, x), weights);
    auto ya = py::array_t<T, py::array::c_style | py::array::forcecast>::ensure(r);
    if (!ya) throw py::error_already_set();
    std::vector<py::ssize_t> want{static_cast<py::ssize_t>(batch)};
    want.insert(want.end(), layer->out_shape.begin(), layer->out_shape.end());
    bool same = ya.ndim() == static_cast<py::ssize_t>(want.size());
    for (py::ssize_t k = 0; same && k < ya.ndim(); ++k) same = ya.shape(k) == want[k];
    if (!same) {
        std::string got = "(", exp = "(";
        for (py::ssize_t k = 0; k < ya.ndim(); ++k) got += (k ? ", " : "") + std::to_string(ya.shape(k));
        for (size_t k = 0; k < want.size(); ++k) exp += (k ? ", " : "") + std::to_string(want[k]);
        throw std::runtime_error("forward returned an array of shape " + got + "), expected " +
                                 exp + ")");
    }
    std::copy(ya.data(), ya.data() + batch * layer->out_size, static_cast<T *>(y));
}

int py_layer_forward(void *instance, int dtype, const void *x, void *y, int64_t batch,
                     const void *const *tensors, char *error, size_t error_capacity) {
    auto *layer = static_cast<PyLayer *>(instance);
    if (!python_alive()) {
        write_error(error, error_capacity, "the Python interpreter is shutting down");
        return 1;
    }
    py::gil_scoped_acquire gil;
    try {
        if (dtype == FKB_FLOAT32) {
            run_py_layer<float>(layer, x, y, batch, tensors);
        } else {
            run_py_layer<double>(layer, x, y, batch, tensors);
        }
        return 0;
    } catch (py::error_already_set &e) {
        write_error(error, error_capacity, python_error_text(e));
    } catch (std::exception &e) {
        write_error(error, error_capacity, e.what());
    }
    return 1;
}

void py_layer_destroy(void *instance) {
    auto *layer = static_cast<PyLayer *>(instance);
    if (!python_alive()) {
        layer->fn.release();  // the interpreter is gone: leave the object alone
        delete layer;
        return;
    }
    py::gil_scoped_acquire gil;
    delete layer;
}

void register_py_layer(const std::string &type_name) {
    static std::vector<std::unique_ptr<std::string>> names;  // user_data lives for the process
    const std::string *user = nullptr;
    for (const auto &n : names) {
        if (*n == type_name) user = n.get();
    }
    if (user == nullptr) {
        names.push_back(std::make_unique<std::string>(type_name));
        user = names.back().get();
    }
    fkb_layer_callbacks cb{};
    cb.configure = &py_layer_configure;
    cb.forward = &py_layer_forward;
    cb.destroy = &py_layer_destroy;
    cb.backward = nullptr;
    fkb_status status = fkb_register_layer_callbacks(type_name.c_str(), &cb,
                                                     const_cast<std::string *>(user));
    if (status != FKB_OK) raise_status(status);
}

}  // namespace

PYBIND11_MODULE(_core, m) {
    m.doc() = "FKB engine (C API) bindings; use the fkb package rather than this module.";
    py::class_<RnnState>(m, "RnnState",
                         "Recurrent state carried from one predict call to the next.")
        .def(py::init<>())
        .def("reset", &RnnState::reset, "Back to zero state.");
    m.def("version", [] { return std::string(fkb_version()); },
          "Version of the linked FKB library.");
    m.def("status_string",
          [](int status) { return std::string(fkb_status_string(static_cast<fkb_status>(status))); },
          py::arg("status"), "Short name of an fkb_status code.");
    m.attr("HEADER_VERSION") = FKB_VERSION_STRING;

    m.def("set_deterministic", [](bool on) { fkb_set_deterministic(on ? 1 : 0); }, py::arg("on"),
          "Deterministic mode for the process (see fkb.set_deterministic).");
    m.def("is_deterministic", [] { return fkb_is_deterministic() != 0; });

    py::class_<LayerContext>(m, "LayerContext",
                             "What configure of a Python-registered layer type sees.")
        .def("option", &LayerContext::option, py::arg("key"))
        .def("name", &LayerContext::name)
        .def("input_shape", &LayerContext::input_shape)
        .def("dtype", &LayerContext::dtype)
        .def("set_output_shape", &LayerContext::set_output_shape, py::arg("dims"))
        .def("declare_tensor", &LayerContext::declare_tensor, py::arg("name"), py::arg("dims"));
    m.def("register_layer", &register_py_layer, py::arg("type_name"),
          "Registers a layer type the engine runs through fkb._engine_layers (Python).");

    py::class_<Ensemble>(m, "Ensemble")
        .def_static("from_paths", &Ensemble::from_paths, py::arg("paths"),
                    py::arg("weights") = py::none())
        .def_static("from_directory", &Ensemble::from_directory, py::arg("dir"))
        .def_static("from_manifest", &Ensemble::from_manifest, py::arg("path"))
        .def_property_readonly("n_members", &Ensemble::n_members)
        .def_property_readonly("n_inputs", &Ensemble::n_inputs)
        .def_property_readonly("n_outputs", &Ensemble::n_outputs)
        .def("set_noise", &Ensemble::set_noise, py::arg("std"), py::arg("copies"),
             py::arg("seed"))
        .def("set_mc_dropout", &Ensemble::set_mc_dropout, py::arg("on"), py::arg("copies"),
             py::arg("seed"))
        .def("predict", &Ensemble::predict, py::arg("x"), py::arg("with_std") = false,
             py::arg("with_range") = false)
        .def("predict_members", &Ensemble::predict_members, py::arg("x"));

    py::class_<Network>(m, "Network")
        .def(py::init<const std::string &>(), py::arg("path"),
             "Loads a .fkb file or a legacy FKB text file.")
        .def("save", &Network::save, py::arg("path"), "Writes a .fkb file (bit-exact).")
        .def("save_legacy", &Network::save_legacy, py::arg("path"),
             "Writes the legacy FKB text format (Dense chains only).")
        .def_property_readonly("n_inputs", &Network::n_inputs)
        .def_property_readonly("n_outputs", &Network::n_outputs)
        .def_property_readonly("dtype", &Network::dtype, "'float32' or 'float64'.")
        .def_property_readonly("description", &Network::description,
                               "Header text of the network's .fkb file.")
        .def_property_readonly("n_tensors", &Network::n_tensors)
        .def("get_tensor", &Network::get_tensor, py::arg("index"),
             "Tensor `index` as a flat float64 array (exact).")
        .def("set_tensor", &Network::set_tensor, py::arg("index"), py::arg("values"),
             "Overwrites tensor `index` from flat float64 values.")
        .def("input_shapes", [](const Network &n) { return n.io_shapes(0); },
             "Per-sample shape of each input (Keras' shape without the batch axis).")
        .def("output_shapes", [](const Network &n) { return n.io_shapes(1); })
        .def("input_names", [](const Network &n) { return n.io_names(0); })
        .def("output_names", [](const Network &n) { return n.io_names(1); })
        .def("predict_multi", &Network::predict_multi, py::arg("xs"),
             py::arg("state") = py::none(),
             "xs: one (batch, values per sample) array per input; returns one per output. "
             "state: an RnnState carried between calls (recurrent layers).")
        .def("predict", &Network::predict, py::arg("x"),
             "Runs the network on x of shape (batch, n_inputs) or (n_inputs,); float32 in "
             "gives float32 out, float64 in gives float64 out.")
        .def("compile_custom", &Network::compile_custom, py::arg("optimizer"), py::arg("fn"))
        .def("set_custom_loss", &Network::set_custom_loss, py::arg("fn"))
        .def("compile", &Network::compile, py::arg("optimizer"), py::arg("loss"),
             "Sets the optimizer and loss (spec texts); resets the optimizer state.")
        .def("train_on_batch", &Network::train_on_batch, py::arg("x"), py::arg("y"),
             py::arg("sample_weight") = py::none(),
             "One optimizer step; returns the batch loss before the step.")
        .def("evaluate", &Network::evaluate, py::arg("x"), py::arg("y"),
             py::arg("sample_weight") = py::none(),
             "The compiled loss in inference mode; nothing changes.")
        .def("train_multi", &Network::train_multi, py::arg("mode"), py::arg("xs"), py::arg("ts"),
             py::arg("sample_weight") = py::none(),
             "mode 1 train_on_batch, 2 gradients, 3 evaluate on lists of arrays (one per input, "
             "one per output): (loss, flat gradients or None).")
        .def("n_targets_of", &Network::n_targets_of, py::arg("k"),
             "Targets per sample of output k (0-based) for the compiled loss.")
        .def("gradients", &Network::gradients, py::arg("x"), py::arg("y"),
             py::arg("sample_weight") = py::none(),
             "(loss, flat float64 gradient of every tensor in tensor order); nothing changes.")
        .def_property_readonly("iterations", &Network::iterations,
                               "Optimizer steps taken since compile.")
        .def("loaded_compiled", &Network::loaded_compiled, py::arg("loss"),
             "Marks a network loaded with its training state as compiled with `loss`.")
        .def_property_readonly("is_compiled", &Network::is_compiled)
        .def_property_readonly("n_targets", &Network::n_targets,
                               "Values of y per sample for the compiled loss.");
}
