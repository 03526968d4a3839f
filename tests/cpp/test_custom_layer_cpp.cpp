// The C++ helper fkb::register_layer<Layer>: a class whose constructor configures (reads an
// option, checks the input, sets the output shape, declares a tensor) and whose const
// template forward/backward compute. "pair_sum": input n (even) -> output n/2,
// y[j] = w[j] * (x[2j] + x[2j+1]) + bias, between an input and a Dense layer. Checked:
// predictions (float64/float32), save round trip, a throwing constructor (load fails with its
// message), a throwing forward (FKB_ERR_LAYER with its message), destructor once per
// instance, gradients against finite differences, refused names.
#include <atomic>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <stdexcept>
#include <string>
#include <vector>

#include "fkb/fkb.hpp"

static int failures = 0, checks = 0;
#define CHECK(cond, what)                                                                  \
    do {                                                                                   \
        ++checks;                                                                          \
        if (!(cond)) {                                                                     \
            ++failures;                                                                    \
            std::printf("FAIL line %d: %s (last error: %s)\n", __LINE__, what,             \
                        fkb_last_error());                                                 \
        }                                                                                  \
    } while (0)

static std::atomic<int> constructed{0}, destroyed{0};

struct PairSum {
    std::int64_t n_out;
    double bias;
    explicit PairSum(fkb::LayerContext &ctx)
    {
        const std::int64_t n = ctx.input_size();
        if (ctx.input_shape().size() != 1 || n % 2 != 0)
            throw std::invalid_argument("pair_sum needs an even rank-1 input, got " +
                                        std::to_string(n));
        bias = std::stod(ctx.option("bias", "0"));
        n_out = n / 2;
        ctx.set_output_shape({n_out});
        ctx.declare_tensor("w", {n_out});
        ++constructed;
    }
    ~PairSum() { ++destroyed; }
    template <class T>
    void forward(const T *x, T *y, std::int64_t batch, fkb::Tensors<T> t) const
    {
        const T *w = t[0];
        for (std::int64_t b = 0; b < batch; ++b)
            for (std::int64_t j = 0; j < n_out; ++j) {
                const T a = x[b * 2 * n_out + 2 * j], c = x[b * 2 * n_out + 2 * j + 1];
                if (std::isnan(a) || std::isnan(c))
                    throw std::domain_error("pair_sum: NaN input in sample " + std::to_string(b));
                y[b * n_out + j] = w[j] * (a + c) + static_cast<T>(bias);
            }
    }
    template <class T>
    void backward(const T *x, const T *, const T *dy, T *dx, std::int64_t batch,
                  fkb::Tensors<T> t, fkb::Grads<T> g) const
    {
        const T *w = t[0];
        T *gw = g[0];
        for (std::int64_t j = 0; j < n_out; ++j) gw[j] = 0;
        for (std::int64_t b = 0; b < batch; ++b)
            for (std::int64_t j = 0; j < n_out; ++j) {
                const T d = dy[b * n_out + j];
                gw[j] += d * (x[b * 2 * n_out + 2 * j] + x[b * 2 * n_out + 2 * j + 1]);
                if (dx) dx[b * 2 * n_out + 2 * j] = dx[b * 2 * n_out + 2 * j + 1] = d * w[j];
            }
    }
};

static double param(int k) { return 0.4 * std::cos(1.3 * k + 0.2); }

// input 6 -> pair_sum (3) -> dense (3 -> 2, linear)
static void write_model(const std::string &path, bool f64, int n_in, const std::string &opts)
{
    const std::string dt = f64 ? "float64" : "float32";
    const int h = n_in / 2;
    const std::string header = "fkb-model\ndtype " + dt + "\ninput " + std::to_string(n_in) +
                               "\nlayer pair_sum name=ps" + opts + "\ntensor w " + dt + " " +
                               std::to_string(h) + "\nlayer dense name=d units=2 " +
                               "activation=linear use_bias=1\ntensor kernel " + dt + " " +
                               std::to_string(h) + ",2\ntensor bias " + dt + " 2\nend\n";
    std::ofstream f(path, std::ios::binary);
    const unsigned char magic[8] = {0x89, 'F', 'K', 'B', '\r', '\n', 0x1a, '\n'};
    const std::uint32_t major = 1, minor = 1;
    const std::uint64_t hlen = header.size();
    f.write(reinterpret_cast<const char *>(magic), 8);
    f.write(reinterpret_cast<const char *>(&major), 4);
    f.write(reinterpret_cast<const char *>(&minor), 4);
    f.write(reinterpret_cast<const char *>(&hlen), 8);
    f << header;
    for (int k = 0; k < h + 2 * h + 2; ++k) {
        const double v = param(k);
        const float s = static_cast<float>(v);
        if (f64)
            f.write(reinterpret_cast<const char *>(&v), 8);
        else
            f.write(reinterpret_cast<const char *>(&s), 4);
    }
}

static std::string bytes(const std::string &path)
{
    std::ifstream f(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(f), {});
}

int main(int argc, char **argv)
{
    const std::string dir = argc > 1 ? argv[1] : ".";
    bool threw = false;
    try {
        fkb::register_layer<PairSum>("softmax");
    } catch (const fkb::Error &e) {
        threw = e.status() == FKB_ERR_ARGUMENT;
    }
    CHECK(threw, "a built-in name is refused with fkb::Error");
    fkb::register_layer<PairSum>("pair_sum");

    for (bool f64 : {true, false}) {
        const std::string path = dir + (f64 ? "/pair_sum64.fkb" : "/pair_sum32.fkb");
        write_model(path, f64, 6, " bias=0.5");
        {
            fkb::Network net(path);
            CHECK(net.n_inputs() == 6 && net.n_outputs() == 2, "widths");
            std::vector<double> x(4 * 6);
            for (std::size_t i = 0; i < x.size(); ++i) {
                x[i] = std::sin(0.7 * i);
                if (!f64) x[i] = static_cast<float>(x[i]);
            }
            auto p = [&](int k) { return f64 ? param(k) : static_cast<double>(static_cast<float>(param(k))); };
            std::vector<double> ref(4 * 2);
            for (int b = 0; b < 4; ++b)
                for (int o = 0; o < 2; ++o) {
                    double s = p(3 + 6 + o);
                    for (int j = 0; j < 3; ++j)
                        s += (p(j) * (x[b * 6 + 2 * j] + x[b * 6 + 2 * j + 1]) + 0.5) *
                             p(3 + j * 2 + o);
                    ref[b * 2 + o] = s;
                }
            const std::vector<double> y = net.predict(x);
            double worst = 0;
            for (std::size_t i = 0; i < y.size(); ++i)
                worst = std::fmax(worst, std::fabs(y[i] - ref[i]) / std::fmax(1.0, std::fabs(ref[i])));
            CHECK(worst <= (f64 ? 1e-12 : 1e-5), "predictions agree with the reference");
            std::vector<double> bad = x;
            bad[6 + 3] = NAN;
            fkb_status status = FKB_OK;
            try {
                net.predict(bad);
            } catch (const fkb::Error &e) {
                status = e.status();
                CHECK(std::string(e.what()).find("NaN input in sample 1") != std::string::npos,
                      "the exception's message reaches the caller");
            }
            CHECK(status == FKB_ERR_LAYER, "a throwing forward gives FKB_ERR_LAYER");
            CHECK(net.predict(x) == y, "the network stays usable");
            net.save(path + ".saved");
            CHECK(bytes(path + ".saved") == bytes(path), "save gives the same bytes");
        }
        CHECK(constructed.load() == destroyed.load(), "destructor once per instance");
    }

    // Training: gradients through backward against central differences.
    {
        fkb::Network net(dir + "/pair_sum64.fkb");
        fkb_network *h = net.handle();
        CHECK(fkb_network_compile(h, "sgd", "mean_squared_error") == FKB_OK, "compile");
        std::vector<double> x(3 * 6), t(3 * 2, 0.1), g(3 + 6 + 2);
        for (std::size_t i = 0; i < x.size(); ++i) x[i] = std::cos(0.3 * i);
        double loss, lp, lm, worst = 0;
        CHECK(fkb_network_gradients(h, x.data(), t.data(), 3, nullptr, &loss, g.data(),
                                    static_cast<std::int64_t>(g.size())) == FKB_OK, "gradients");
        std::vector<double> w(3);
        fkb_network_get_tensor(h, 0, w.data(), 3);
        for (int j = 0; j < 3; ++j) {
            const double keep = w[j], eps = 1e-6;
            w[j] = keep + eps;
            fkb_network_set_tensor(h, 0, w.data(), 3);
            fkb_network_evaluate(h, x.data(), t.data(), 3, nullptr, &lp);
            w[j] = keep - eps;
            fkb_network_set_tensor(h, 0, w.data(), 3);
            fkb_network_evaluate(h, x.data(), t.data(), 3, nullptr, &lm);
            w[j] = keep;
            fkb_network_set_tensor(h, 0, w.data(), 3);
            worst = std::fmax(worst, std::fabs((lp - lm) / (2 * eps) - g[j]) /
                                         std::fmax(1e-3, std::fabs(g[j])));
        }
        CHECK(worst < 1e-5, "gradient of w = finite differences");
    }

    // A throwing constructor: the load fails with its message, nothing is left behind.
    write_model(dir + "/pair_sum_odd.fkb", true, 5, "");
    std::string message;
    try {
        fkb::Network net(dir + "/pair_sum_odd.fkb");
    } catch (const fkb::Error &e) {
        message = e.what();
    }
    CHECK(message.find("pair_sum needs an even rank-1 input, got 5") != std::string::npos &&
              message.find("'ps'") != std::string::npos,
          "a throwing constructor fails the load with its message");
    write_model(dir + "/pair_sum_opt.fkb", true, 6, " bias=1 colour=red");
    message.clear();
    try {
        fkb::Network net(dir + "/pair_sum_opt.fkb");
    } catch (const fkb::Error &e) {
        message = e.what();
    }
    CHECK(message.find("unknown option 'colour'") != std::string::npos, "unread options refused");
    CHECK(constructed.load() > 0 && constructed.load() == destroyed.load(),
          "every instance destroyed once");
    std::printf("%d instances; %d checks, %d failed\n", constructed.load(), checks, failures);
    return failures ? 1 : 0;
}
