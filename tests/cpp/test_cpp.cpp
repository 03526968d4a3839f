// The C++ wrapper: RAII ownership, move semantics, predict on vectors, exceptions with the
// status and message of the C API. Compared with Keras on one reference case (rtol as in C).
#include <cmath>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "fkb/fkb.hpp"

static int n_pass = 0, n_fail = 0;
static void check(bool ok, const std::string &what)
{
    if (ok) {
        ++n_pass;
    } else {
        ++n_fail;
        std::printf("FAIL: %s\n", what.c_str());
    }
}

static std::vector<double> read_f64(const std::string &path, std::size_t n)
{
    std::vector<double> v(n);
    std::ifstream in(path, std::ios::binary);
    in.read(reinterpret_cast<char *>(v.data()), static_cast<std::streamsize>(n * sizeof(double)));
    if (!in) v.clear();
    return v;
}

int main(int argc, char **argv)
{
    if (argc < 2) return 2;
    const std::string dir = argv[1], name = "dense_tanh_float64";
    try {
        fkb::Network net(dir + "/" + name + ".fkb");
        const auto n_in = static_cast<std::size_t>(net.n_inputs());
        const auto n_out = static_cast<std::size_t>(net.n_outputs());
        const std::size_t batch = 7;
        std::vector<double> x = read_f64(dir + "/" + name + ".x.bin", n_in * batch);
        std::vector<double> ref = read_f64(dir + "/" + name + ".y.bin", n_out * batch);
        check(!x.empty() && !ref.empty(), "reference data");
        std::vector<double> y = net.predict(x);
        double worst = 0;
        for (std::size_t i = 0; i < y.size() && i < ref.size(); ++i)
            worst = std::fmax(worst, std::fabs(y[i] - ref[i]) / (1e-12 * std::fmax(1.0, std::fabs(ref[i]))));
        check(y.size() == ref.size() && worst <= 1, "vector predict matches Keras");
        check(net.dtype() == FKB_FLOAT64, "dtype");
        fkb::Network moved(std::move(net));
        check(net.handle() == nullptr && moved.handle() != nullptr, "move transfers ownership");
        check(moved.description().rfind("fkb-model", 0) == 0, "description");
        bool threw = false;
        try {
            std::vector<double> wrong(n_in + 1);
            moved.predict(wrong);
        } catch (const fkb::Error &e) {
            threw = e.status() == FKB_ERR_SHAPE;
        }
        check(threw, "a ragged input throws a shape error");
    } catch (const std::exception &e) {
        check(false, std::string("unexpected exception: ") + e.what());
    }
    try {
        fkb::Network missing("/no/such/model.fkb");
        check(false, "loading a missing file throws");
    } catch (const fkb::Error &e) {
        check(e.status() == FKB_ERR_IO && std::string(e.what()).find("/no/such/model.fkb") !=
                                              std::string::npos, "error carries status and path");
    }
    std::printf("%d passed, %d failed\n", n_pass, n_fail);
    return n_fail == 0 ? 0 : 1;
}
