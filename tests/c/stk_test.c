/* The C test of libstk, run by crates/stk-capi/tests/c_abi.rs:
 *
 *   stk_test DATA_DIR MODEL_DIR cuda|no-cuda
 *
 * DATA_DIR holds golden cases the Rust test wrote from tests/golden: NAME.case (one
 * "key values..." per line), NAME.tokens / NAME.mask / NAME.cu / NAME.x (raw little-endian
 * inputs) and NAME.expected (f32). encode.texts and opt.texts hold texts as "LENGTH\nBYTES\n"
 * records; optK.case / optK.expected / optK.calibration are the encode-option cases (fixtures
 * made by sentence-transformers 6.2), whose expected bytes are in the output dtype; seqK.case /
 * seqK.offsets (u64) / seqK.expected are model2vec's encode_as_sequence through the library.
 * Prints one line per check and exits 1 if any failed. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stk.h"

static int failures = 0;

#define CHECK(cond, ...)                                                                      \
    do {                                                                                      \
        if (!(cond)) {                                                                        \
            failures++;                                                                       \
            printf("FAIL %s:%d: ", __FILE__, __LINE__);                                       \
            printf(__VA_ARGS__);                                                              \
            printf("\n");                                                                     \
        }                                                                                     \
    } while (0)

static const char *data_dir;

static void *read_file(const char *name, size_t *len) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", data_dir, name);
    FILE *f = fopen(path, "rb");
    if (!f) {
        printf("FAIL cannot open %s\n", path);
        exit(1);
    }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    void *buf = malloc(n > 0 ? (size_t)n : 1);
    if (fread(buf, 1, (size_t)n, f) != (size_t)n) {
        printf("FAIL cannot read %s\n", path);
        exit(1);
    }
    fclose(f);
    *len = (size_t)n;
    return buf;
}

/* The values of `key` in NAME.case (up to `max` integers); returns how many were read. */
static size_t case_ints(const char *name, const char *key, int64_t *values, size_t max) {
    char file[512], line[1024];
    snprintf(file, sizeof file, "%s/%s.case", data_dir, name);
    FILE *f = fopen(file, "r");
    if (!f) {
        printf("FAIL cannot open %s\n", file);
        exit(1);
    }
    size_t n = 0;
    while (fgets(line, sizeof line, f)) {
        size_t k = strlen(key);
        if (strncmp(line, key, k) != 0 || line[k] != ' ') continue;
        char *p = line + k;
        char *end;
        while (n < max) {
            long long v = strtoll(p, &end, 10);
            if (end == p) break;
            values[n++] = v;
            p = end;
        }
    }
    fclose(f);
    return n;
}

static double case_double(const char *name, const char *key) {
    char file[512], line[1024];
    snprintf(file, sizeof file, "%s/%s.case", data_dir, name);
    FILE *f = fopen(file, "r");
    double v = NAN;
    size_t k = strlen(key);
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, key, k) == 0 && line[k] == ' ') v = strtod(line + k, NULL);
    if (f) fclose(f);
    return v;
}

/* Elementwise |got - expected| <= tol * max(1, |expected|), the golden cases' rule; infinities
 * (max pooling of a row with no token) must match exactly. */
static void check_close(const char *what, const float *got, const float *expected, size_t n,
                        double tol) {
    size_t bad = 0, first = 0;
    for (size_t i = 0; i < n; i++) {
        double e = expected[i], scale = fabs(e) > 1.0 ? fabs(e) : 1.0;
        if (!(got[i] == e || fabs(got[i] - e) <= tol * scale)) {
            if (!bad) first = i;
            bad++;
        }
    }
    CHECK(bad == 0, "%s: %zu of %zu values off (first at %zu: got %g, expected %g)", what, bad, n,
          first, bad ? got[first] : 0.0, bad ? expected[first] : 0.0);
    if (!bad) printf("ok   %s (%zu values within %g)\n", what, n, tol);
}

/* The expected status and words of the message. */
static void check_error(const char *what, int status, int expected, const char *words) {
    const char *message = stk_last_error_message();
    CHECK(status == expected, "%s: status %d, expected %d (%s)", what, status, expected, message);
    CHECK(strstr(message, words) != NULL, "%s: message \"%s\" lacks \"%s\"", what, message, words);
    if (status == expected && strstr(message, words)) printf("ok   %s: %d \"%s\"\n", what, status, message);
}

/* ---- encoding ---- */

typedef struct {
    char **texts;
    size_t n;
} texts_t;

static texts_t read_texts(const char *file) {
    size_t len;
    char *buf = read_file(file, &len);
    texts_t t = {malloc(sizeof(char *) * 4096), 0};
    char *p = buf, *end = buf + len;
    while (p < end && t.n < 4096) {
        char *nl;
        size_t n = (size_t)strtoull(p, &nl, 10);
        p = nl + 1;
        t.texts[t.n] = malloc(n + 1);
        memcpy(t.texts[t.n], p, n);
        t.texts[t.n][n] = '\0';
        t.n++;
        p += n + 1;
    }
    free(buf);
    return t;
}

static void check_encode(const char *what, const char *model_path, const texts_t *t) {
    stk_model *model = NULL;
    int status = stk_model_load(model_path, &model);
    CHECK(status == STK_OK && model != NULL, "%s: load: %d %s", what, status,
          stk_last_error_message());
    if (!model) return;
    size_t dim = 0;
    CHECK(stk_model_dim(model, &dim) == STK_OK && dim == 256, "%s: dim %zu", what, dim);
    size_t len;
    float *expected = read_file("encode.expected", &len);
    CHECK(len == t->n * dim * sizeof(float), "%s: expected %zu bytes", what, len);
    float *out = malloc(len);
    status = stk_model_encode(model, (const char *const *)t->texts, t->n, out);
    CHECK(status == STK_OK, "%s: encode: %d %s", what, status, stk_last_error_message());
    CHECK(strcmp(stk_last_error_message(), "") == 0, "%s: message after success", what);
    if (status == STK_OK) check_close(what, out, expected, t->n * dim, case_double("encode", "tolerance"));

    /* Bad texts: a NULL entry, invalid UTF-8. */
    const char *with_null[] = {"fine", NULL};
    check_error("encode with texts[1] NULL", stk_model_encode(model, with_null, 2, out),
                STK_ERR_NULL_POINTER, "texts[1]");
    const char *not_utf8[] = {"\xff\xfe"};
    check_error("encode invalid UTF-8", stk_model_encode(model, not_utf8, 1, out),
                STK_ERR_INVALID_ARGUMENT, "UTF-8");
    check_error("encode NULL out", stk_model_encode(model, with_null, 1, NULL),
                STK_ERR_NULL_POINTER, "out");
    CHECK(stk_model_encode(model, NULL, 0, NULL) == STK_OK, "encode of no text");
    free(out);
    free(expected);
    CHECK(stk_model_free(model) == STK_OK, "free");
}

/* ---- encode options (SentenceTransformer.encode's truncate_dim, normalize_embeddings,
 * precision), against sentence-transformers 6.2's answers ---- */

/* The model folder named by NAME.case's `model` line. */
static void case_model(const char *name, char *out, size_t size) {
    char file[512], line[4096];
    snprintf(file, sizeof file, "%s/%s.case", data_dir, name);
    FILE *f = fopen(file, "r");
    out[0] = '\0';
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, "model ", 6) == 0) {
            snprintf(out, size, "%s", line + 6);
            out[strcspn(out, "\n")] = '\0';
        }
    if (f) fclose(f);
}

static int64_t case_int(const char *name, const char *key, int64_t fallback) {
    int64_t v;
    return case_ints(name, key, &v, 1) == 1 ? v : fallback;
}

static void check_option_case(int k, const texts_t *t) {
    char name[64], file[96], model_path[4096], what[160];
    snprintf(name, sizeof name, "opt%d", k);
    case_model(name, model_path, sizeof model_path);
    stk_encode_options options = {0};
    options.truncate_dim = (size_t)case_int(name, "truncate_dim", 0);
    options.normalize_embeddings = (int32_t)case_int(name, "normalize", 0);
    options.precision = (int32_t)case_int(name, "precision", -1);
    int64_t calibration_rows = case_int(name, "calibration_rows", 0);
    float *calibration = NULL;
    if (calibration_rows > 0) {
        size_t len;
        snprintf(file, sizeof file, "%s.calibration", name);
        calibration = read_file(file, &len);
        options.calibration = calibration;
        options.calibration_rows = (size_t)calibration_rows;
    }
    snprintf(what, sizeof what, "encode options %s (truncate %zu, normalize %d, precision %d%s)",
             name, options.truncate_dim, (int)options.normalize_embeddings, (int)options.precision,
             calibration ? ", calibrated" : "");
    stk_model *model = NULL;
    int status = stk_model_load(model_path, &model);
    CHECK(status == STK_OK, "%s: load %s: %d %s", what, model_path, status, stk_last_error_message());
    if (status != STK_OK) return;
    int32_t dtype = -1;
    size_t cols = 0;
    status = stk_encode_output_shape(model, &options, &dtype, &cols);
    CHECK(status == STK_OK && dtype == case_int(name, "dtype", -2) && (int64_t)cols == case_int(name, "cols", -2),
          "%s: output shape: %d, dtype %d, cols %zu", what, status, (int)dtype, cols);
    size_t expected_len;
    snprintf(file, sizeof file, "%s.expected", name);
    unsigned char *expected = read_file(file, &expected_len);
    CHECK((int64_t)t->n == case_int(name, "rows", -1), "%s: rows", what);
    unsigned char *out = malloc(expected_len ? expected_len : 1);
    status = stk_model_encode_with_options(model, (const char *const *)t->texts, t->n, &options, out,
                                           expected_len);
    CHECK(status == STK_OK, "%s: encode: %d %s", what, status, stk_last_error_message());
    if (status == STK_OK) {
        if (dtype == STK_DTYPE_F32) {
            check_close(what, (const float *)out, (const float *)expected, expected_len / 4, 1e-5);
        } else {
            CHECK(memcmp(out, expected, expected_len) == 0, "%s: bytes differ", what);
            if (memcmp(out, expected, expected_len) == 0) printf("ok   %s (%zu bytes equal)\n", what, expected_len);
        }
    }
    if (k == 0) {
        /* Bad options: a wrong output size, an unknown precision, a width beyond the model's,
         * NULL options, calibration rows for a float output. */
        check_error("encode options: out one byte short",
                    stk_model_encode_with_options(model, (const char *const *)t->texts, t->n, &options,
                                                  out, expected_len - 1),
                    STK_ERR_SHAPE, "out");
        stk_encode_options bad = options;
        bad.precision = 9;
        check_error("encode options: unknown precision", stk_encode_output_shape(model, &bad, &dtype, &cols),
                    STK_ERR_INVALID_ARGUMENT, "precision 9");
        bad = options;
        bad.truncate_dim = 100000;
        check_error("encode options: truncate_dim beyond the width",
                    stk_encode_output_shape(model, &bad, &dtype, &cols), STK_ERR_INVALID_ARGUMENT,
                    "100000");
        check_error("encode options: NULL options",
                    stk_model_encode_with_options(model, (const char *const *)t->texts, t->n, NULL, out,
                                                  expected_len),
                    STK_ERR_NULL_POINTER, "options");
        float row[1024] = {0};
        bad = options;
        bad.precision = STK_PRECISION_FLOAT32;
        bad.calibration = row;
        bad.calibration_rows = 1;
        check_error("encode options: calibration for float32",
                    stk_encode_output_shape(model, &bad, &dtype, &cols), STK_ERR_INVALID_ARGUMENT,
                    "calibration");
    }
    free(out);
    free(expected);
    free(calibration);
    stk_model_free(model);
}

static void check_encode_options(void) {
    texts_t t = read_texts("opt.texts");
    int count = (int)case_int("opt", "count", 0);
    CHECK(count >= 40, "encode option cases: %d", count);
    for (int k = 0; k < count; k++) check_option_case(k, &t);
    for (size_t i = 0; i < t.n; i++) free(t.texts[i]);
    free(t.texts);
}

/* ---- pooling ---- */

static int dtype_of(const char *name, const char *key) {
    char file[512], line[1024], value[64];
    snprintf(file, sizeof file, "%s/%s.case", data_dir, name);
    FILE *f = fopen(file, "r");
    size_t k = strlen(key);
    int d = -1;
    while (f && fgets(line, sizeof line, f)) {
        if (strncmp(line, key, k) != 0 || line[k] != ' ') continue;
        sscanf(line + k, "%63s", value);
        d = !strcmp(value, "f32")    ? STK_DTYPE_F32
            : !strcmp(value, "f16")  ? STK_DTYPE_F16
            : !strcmp(value, "bf16") ? STK_DTYPE_BF16
            : !strcmp(value, "i32")  ? STK_DTYPE_I32
            : !strcmp(value, "i64")  ? STK_DTYPE_I64
                                     : -1;
    }
    if (f) fclose(f);
    return d;
}

static int mode_of(const char *name) {
    static const char *names[] = {"cls", "max", "mean", "mean_sqrt_len_tokens", "weightedmean",
                                  "lasttoken"};
    static const int values[] = {STK_POOL_CLS,          STK_POOL_MAX,
                                 STK_POOL_MEAN,         STK_POOL_MEAN_SQRT_LEN_TOKENS,
                                 STK_POOL_WEIGHTEDMEAN, STK_POOL_LASTTOKEN};
    for (int i = 0; i < 6; i++)
        if (!strcmp(name, names[i])) return values[i];
    return -1;
}

typedef struct {
    stk_pool_args args;
    int32_t modes[8];
    void *tokens, *layout;
    float *expected;
    size_t out_len;
    double tolerance;
} pool_case_t;

/* Fills *c (in place: c->args.modes points into it). */
static void read_pool_case(const char *name, pool_case_t *out) {
    pool_case_t c;
    memset(&c, 0, sizeof c);
    char file[512], line[1024];
    int64_t v[8];
    size_t len;
    snprintf(file, sizeof file, "%s.tokens", name);
    c.tokens = read_file(file, &len);
    c.args.tokens = c.tokens;
    c.args.dtype = dtype_of(name, "dtype");
    c.args.tokens_rank = case_ints(name, "tokens_dims", v, 3);
    for (size_t i = 0; i < c.args.tokens_rank; i++) c.args.tokens_dims[i] = (size_t)v[i];
    if (case_ints(name, "mask_dims", v, 2) == 2) {
        snprintf(file, sizeof file, "%s.mask", name);
        c.layout = read_file(file, &len);
        c.args.mask = c.layout;
        c.args.mask_dtype = dtype_of(name, "mask_dtype");
        c.args.mask_dims[0] = (size_t)v[0];
        c.args.mask_dims[1] = (size_t)v[1];
    }
    if (case_ints(name, "cu_seq_lens_len", v, 1) == 1) {
        snprintf(file, sizeof file, "%s.cu", name);
        c.layout = read_file(file, &len);
        c.args.cu_seq_lens = c.layout;
        c.args.cu_seq_lens_dtype = dtype_of(name, "cu_seq_lens_dtype");
        c.args.cu_seq_lens_len = (size_t)v[0];
    }
    /* modes: names on one line */
    snprintf(file, sizeof file, "%s/%s.case", data_dir, name);
    FILE *f = fopen(file, "r");
    while (f && fgets(line, sizeof line, f)) {
        if (strncmp(line, "modes ", 6) != 0) continue;
        char *tok = strtok(line + 6, " \n");
        while (tok && c.args.modes_len < 8) {
            c.modes[c.args.modes_len++] = mode_of(tok);
            tok = strtok(NULL, " \n");
        }
    }
    if (f) fclose(f);
    c.args.prompt_length = case_ints(name, "prompt_length", v, 1) ? v[0] : STK_NO_PROMPT;
    snprintf(file, sizeof file, "%s.expected", name);
    c.expected = read_file(file, &len);
    c.out_len = len / sizeof(float);
    c.tolerance = case_double(name, "tolerance");
    *out = c;
    out->args.modes = out->modes;
}

static void free_pool_case(pool_case_t *c) {
    free(c->tokens);
    free(c->layout);
    free(c->expected);
}

static void check_pool(const char *name) {
    pool_case_t c;
    read_pool_case(name, &c);
    float *out = malloc(c.out_len * sizeof(float));
    int status = stk_pool(&c.args, out, c.out_len);
    CHECK(status == STK_OK, "%s: stk_pool: %d %s", name, status, stk_last_error_message());
    if (status == STK_OK) check_close(name, out, c.expected, c.out_len, c.tolerance);
    free(out);
    free_pool_case(&c);
}

static void check_normalize(const char *name) {
    size_t len;
    char file[512];
    int64_t dims[2];
    snprintf(file, sizeof file, "%s.x", name);
    void *x = read_file(file, &len);
    snprintf(file, sizeof file, "%s.expected", name);
    float *expected = read_file(file, &len);
    case_ints(name, "dims", dims, 2);
    size_t n = (size_t)(dims[0] * dims[1]);
    float *out = malloc(n * sizeof(float));
    int status = stk_normalize(x, dtype_of(name, "dtype"), (size_t)dims[0], (size_t)dims[1], out, n);
    CHECK(status == STK_OK, "%s: stk_normalize: %d %s", name, status, stk_last_error_message());
    if (status == STK_OK) check_close(name, out, expected, n, case_double(name, "tolerance"));
    check_error("normalize with a short out_len",
                stk_normalize(x, dtype_of(name, "dtype"), (size_t)dims[0], (size_t)dims[1], out, n - 1),
                STK_ERR_SHAPE, "out");
    free(out);
    free(x);
    free(expected);
}

/* Bad pooling arguments, each from a valid padded case changed in one way. */
static void check_bad_pool_args(const char *padded, const char *varlen, int has_cuda) {
    pool_case_t c;
    read_pool_case(padded, &c);
    float *out = malloc(c.out_len * sizeof(float));
    stk_pool_args a;

    check_error("pool NULL args", stk_pool(NULL, out, c.out_len), STK_ERR_NULL_POINTER, "args");
    a = c.args;
    a.tokens = NULL;
    check_error("pool NULL tokens", stk_pool(&a, out, c.out_len), STK_ERR_NULL_POINTER, "tokens");
    check_error("pool NULL out", stk_pool(&c.args, NULL, c.out_len), STK_ERR_NULL_POINTER, "out");
    a = c.args;
    a.dtype = 42;
    check_error("pool unknown dtype", stk_pool(&a, out, c.out_len), STK_ERR_DTYPE,
                "unknown dtype value 42");
    a = c.args;
    a.dtype = STK_DTYPE_I32;
    check_error("pool integer tokens", stk_pool(&a, out, c.out_len), STK_ERR_DTYPE,
                "token_embeddings");
    a = c.args;
    a.mask_dims[0] += 1;
    check_error("pool mask batch mismatch", stk_pool(&a, out, c.out_len), STK_ERR_SHAPE,
                "attention_mask");
    check_error("pool out_len mismatch", stk_pool(&c.args, out, c.out_len - 1), STK_ERR_SHAPE,
                "out");
    a = c.args;
    int32_t bad_mode = 9;
    a.modes = &bad_mode;
    a.modes_len = 1;
    check_error("pool unknown mode", stk_pool(&a, out, c.out_len), STK_ERR_INVALID_ARGUMENT,
                "unknown pooling mode");
    a = c.args;
    a.prompt_length = -5;
    check_error("pool negative prompt length", stk_pool(&a, out, c.out_len),
                STK_ERR_INVALID_ARGUMENT, "prompt_length -5");
    a = c.args;
    a.tokens_rank = 4;
    check_error("pool rank 4", stk_pool(&a, out, c.out_len), STK_ERR_INVALID_ARGUMENT,
                "tokens_rank 4");

    /* The device variant checks the same arguments first, then needs a driver. */
    a = c.args;
    a.dtype = 42;
    check_error("pool_device unknown dtype", stk_pool_device(0, &a, out, c.out_len, NULL),
                STK_ERR_DTYPE, "unknown dtype value 42");
    a = c.args;
    a.mask_dims[0] += 1;
    check_error("pool_device mask batch mismatch", stk_pool_device(0, &a, out, c.out_len, NULL),
                STK_ERR_SHAPE, "attention_mask");
    if (!has_cuda) {
        check_error("pool_device without CUDA", stk_pool_device(0, &c.args, out, c.out_len, NULL),
                    STK_ERR_NO_CUDA, "CUDA");
        check_error("normalize_device without CUDA",
                    stk_normalize_device(0, c.tokens, STK_DTYPE_F32, 1, 4, out, NULL),
                    STK_ERR_NO_CUDA, "CUDA");
    }
    free(out);
    free_pool_case(&c);

    /* varlen: cu_seq_lens that do not end at the token count */
    pool_case_t v;
    read_pool_case(varlen, &v);
    out = malloc(v.out_len * sizeof(float));
    a = v.args;
    a.tokens_dims[0] -= 1;
    check_error("pool cu_seq_lens past the tokens", stk_pool(&a, out, v.out_len), STK_ERR_LAYOUT,
                "cu_seq_lens");
    a = v.args;
    a.mask = v.layout;
    a.mask_dtype = STK_DTYPE_I64;
    a.mask_dims[0] = 1;
    a.mask_dims[1] = 1;
    check_error("pool with two layouts", stk_pool(&a, out, v.out_len), STK_ERR_INVALID_ARGUMENT,
                "keep one");
    free(out);
    free_pool_case(&v);
}

/* ---- model2vec's encode_as_sequence: row offsets, then the rows, against the library's ---- */

static void check_sequence_case(int k, const texts_t *t) {
    char name[32], path[4096], what[4200];
    snprintf(name, sizeof name, "seq%d", k);
    case_model(name, path, sizeof path);
    int64_t limit = case_int(name, "max_length", -1);
    size_t max_length = limit < 0 ? SIZE_MAX : (size_t)limit;
    snprintf(what, sizeof what, "encode_as_sequence, %s, max_length %lld", path, (long long)limit);
    stk_model *model = NULL;
    int status = stk_model_load(path, &model);
    CHECK(status == STK_OK, "%s: load: %d %s", what, status, stk_last_error_message());
    if (!model) return;
    size_t dim = 0, len = 0, n = t->n;
    const char *const *texts = (const char *const *)t->texts;
    CHECK(stk_model_dim(model, &dim) == STK_OK, "%s: dim", what);
    size_t *offsets = malloc(sizeof(size_t) * (n + 1));
    status = stk_model_sequence_offsets(model, texts, n, max_length, offsets);
    CHECK(status == STK_OK, "%s: offsets: %d %s", what, status, stk_last_error_message());
    char file[64];
    snprintf(file, sizeof file, "%s.offsets", name);
    uint64_t *expected_offsets = read_file(file, &len);
    CHECK(len == (n + 1) * sizeof(uint64_t), "%s: %zu offset bytes", what, len);
    size_t off = 0;
    for (size_t i = 0; i <= n && status == STK_OK; i++)
        if (offsets[i] != expected_offsets[i]) off++;
    CHECK(off == 0, "%s: %zu offsets differ", what, off);
    if (status == STK_OK && off == 0) {
        size_t values = offsets[n] * dim;
        float *out = malloc(sizeof(float) * (values + 1));
        snprintf(file, sizeof file, "%s.expected", name);
        float *expected = read_file(file, &len);
        CHECK(len == values * sizeof(float), "%s: %zu expected bytes", what, len);
        status = stk_model_encode_as_sequence(model, texts, n, max_length, out, values);
        CHECK(status == STK_OK, "%s: rows: %d %s", what, status, stk_last_error_message());
        if (status == STK_OK) check_close(what, out, expected, values, 0.0);
        check_error("encode_as_sequence, out_len one short",
                    stk_model_encode_as_sequence(model, texts, n, max_length, out, values - 1),
                    STK_ERR_SHAPE, "out");
        check_error("encode_as_sequence, NULL out",
                    stk_model_encode_as_sequence(model, texts, n, max_length, NULL, values),
                    STK_ERR_NULL_POINTER, "out");
        free(out);
        free(expected);
    }
    check_error("sequence_offsets, NULL offsets",
                stk_model_sequence_offsets(model, texts, n, max_length, NULL),
                STK_ERR_NULL_POINTER, "offsets");
    free(expected_offsets);
    free(offsets);
    CHECK(stk_model_free(model) == STK_OK, "%s: free", what);
}

static void check_sequences(void) {
    texts_t t = read_texts("encode.texts");
    int count = (int)case_int("seq", "count", 0);
    CHECK(count > 0, "no encode_as_sequence cases");
    for (int k = 0; k < count; k++) check_sequence_case(k, &t);
    for (size_t i = 0; i < t.n; i++) free(t.texts[i]);
    free(t.texts);
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s DATA_DIR MODEL_DIR cuda|no-cuda\n", argv[0]);
        return 2;
    }
    data_dir = argv[1];
    int has_cuda = strcmp(argv[3], "cuda") == 0;

    const char *version = stk_version();
    CHECK(version && strlen(version) > 0, "stk_version");
    printf("libstk %s\n", version);

    texts_t t = read_texts("encode.texts");
    check_encode("encode, embedded model (NULL path)", NULL, &t);
    check_encode("encode, model folder", argv[2], &t);

    stk_model *model = (stk_model *)1;
    check_error("load a missing folder", stk_model_load("/nonexistent/stk-model", &model),
                STK_ERR_IO, "/nonexistent/stk-model");
    CHECK(model == NULL, "a failed load sets *out to NULL");
    check_error("load into NULL", stk_model_load(NULL, NULL), STK_ERR_NULL_POINTER, "out");
    size_t dim;
    check_error("dim of NULL", stk_model_dim(NULL, &dim), STK_ERR_NULL_POINTER, "model");
    float dummy;
    const char *one[] = {"x"};
    check_error("encode with NULL model", stk_model_encode(NULL, one, 1, &dummy),
                STK_ERR_NULL_POINTER, "model");
    CHECK(stk_model_free(NULL) == STK_OK, "free(NULL)");

    check_pool("padded");
    check_pool("padded_i32_mask");
    check_pool("varlen");
    check_pool("varlen_i32");
    check_normalize("normalize");
    check_bad_pool_args("padded", "varlen", has_cuda);
    check_encode_options();
    check_sequences();

    for (size_t i = 0; i < t.n; i++) free(t.texts[i]);
    free(t.texts);
    printf("%s: %d failed\n", failures ? "FAILED" : "PASSED", failures);
    return failures ? 1 : 0;
}
