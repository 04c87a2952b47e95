// Encode a few sentences with libstk and print their cosine similarities.
//
//   c++ -std=c++17 -I include examples/cpp/encode.cpp -L target/release -lstk -o encode
//   LD_LIBRARY_PATH=target/release ./encode [MODEL_FOLDER]
//
// Without MODEL_FOLDER the default model embedded in libstk is used.
#include <cmath>
#include <cstdio>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "stk.h"

namespace {

// A failed call becomes an exception carrying stk's message.
void check(int status, const char* what) {
    if (status != STK_OK) {
        throw std::runtime_error(std::string(what) + " failed (" + std::to_string(status) +
                                 "): " + stk_last_error_message());
    }
}

struct ModelFree {
    void operator()(stk_model* m) const { stk_model_free(m); }
};
using Model = std::unique_ptr<stk_model, ModelFree>;

Model load(const char* folder) {
    stk_model* raw = nullptr;
    check(stk_model_load(folder, &raw), "stk_model_load");
    return Model(raw);
}

double cosine(const float* a, const float* b, size_t dim) {
    double dot = 0, na = 0, nb = 0;
    for (size_t i = 0; i < dim; i++) {
        dot += double(a[i]) * b[i];
        na += double(a[i]) * a[i];
        nb += double(b[i]) * b[i];
    }
    return dot / (std::sqrt(na) * std::sqrt(nb) + 1e-12);
}

}  // namespace

int main(int argc, char** argv) {
    try {
        Model model = load(argc > 1 ? argv[1] : nullptr);
        size_t dim = 0;
        check(stk_model_dim(model.get(), &dim), "stk_model_dim");

        std::vector<const char*> sentences = {
            "The cat sits on the mat.",
            "A kitten is sleeping on a rug.",
            "The central bank raised interest rates.",
        };
        std::vector<float> embeddings(sentences.size() * dim);
        check(stk_model_encode(model.get(), sentences.data(), sentences.size(), embeddings.data()),
              "stk_model_encode");

        std::printf("libstk %s, %zu dimensions\n", stk_version(), dim);
        for (size_t i = 0; i < sentences.size(); i++) std::printf("%zu: %s\n", i, sentences[i]);
        for (size_t i = 0; i < sentences.size(); i++) {
            std::printf("[%zu]", i);
            for (size_t j = 0; j < sentences.size(); j++)
                std::printf(" %.3f", cosine(&embeddings[i * dim], &embeddings[j * dim], dim));
            std::printf("\n");
        }
    } catch (const std::exception& e) {
        std::fprintf(stderr, "%s\n", e.what());
        return 1;
    }
    return 0;
}
