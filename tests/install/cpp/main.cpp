// A C++ host using the installed FKB through the RAII wrapper.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <string>
#include <stdexcept>
#include <vector>

#include <fkb/fkb.hpp>

static std::vector<double> slurp(const std::string &path, std::size_t n)
{
    std::vector<double> v(n);
    std::ifstream in(path, std::ios::binary);
    in.read(reinterpret_cast<char *>(v.data()), static_cast<std::streamsize>(n * sizeof(double)));
    return v;
}

int main(int argc, char **argv)
{
    if (argc < 3) return 2;  // consumer CASE RTOL
    const double rtol = std::stod(argv[2]);
    const std::string base = argv[1];
    fkb::Network net(base + ".fkb");
    const std::size_t n = 1024;
    auto x = slurp(base + ".x.bin", n * static_cast<std::size_t>(net.n_inputs()));
    auto ref = slurp(base + ".y.bin", n * static_cast<std::size_t>(net.n_outputs()));
    auto y = net.predict(x);
    double worst = 0;
    for (std::size_t i = 0; i < y.size(); ++i)
    {
        const double e = std::fabs(y[i] - ref[i]) / std::max(1.0, std::fabs(ref[i]));
        if (!(e <= worst)) worst = e;  // NaN counts as a failure
    }
    std::printf("c++ consumer: max |fkb - keras| / max(1,|keras|) = %.3e\n", worst);
    return worst <= rtol ? 0 : 1;
}
