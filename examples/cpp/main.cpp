// Using FKB from C++: the RAII wrapper throws fkb::Error with the library's message.
#include <cstdio>
#include <vector>

#include <fkb/fkb.hpp>

int main(int argc, char **argv)
{
    if (argc < 2) return 2;
    try {
        fkb::Network net(argv[1]);
        std::vector<double> x(static_cast<std::size_t>(3 * net.n_inputs()), 0.5);  // 3 samples
        std::vector<double> y = net.predict(x);
        std::printf("%zu outputs, first %g\n", y.size(), y.front());
    } catch (const fkb::Error &e) {
        std::fprintf(stderr, "fkb: %s\n", e.what());
        return 1;
    }
    return 0;
}
