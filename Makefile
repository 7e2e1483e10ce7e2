# shoal — one binary, plain make.
#
#   make deps     install the Debian packages the project needs (idempotent, apt-get)
#   make          build build/shoal
#   make run      build, generate a small model and `shoal inspect` it (the README's first command)
#   make test     the whole suite: unit + integration tests, sanitizer build, short fuzz runs
#   make unit     unit tests only            make asan   unit tests under ASan+UBSan
#   make fuzz     libFuzzer runs (FUZZ_SECONDS each, default 60)
#   make clang    warning-free check of the whole tree with clang
#
# SIMD code is chosen at run time: files named *_avx2.c / *_avx512.c are compiled with their ISA
# flags, everything else for the baseline x86-64 target. Never add -march=native here.

CC      ?= cc
BUILD   ?= build
OPT     ?= -O2 -g
SAN     ?=
PKGS    := jansson libcrypto libmicrohttpd libcurl yaml-0.1 sqlite3 hiredis
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null || echo -ljansson -lcrypto -lmicrohttpd -lcurl -lyaml -lsqlite3 -lhiredis)

WARN    := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
           -Wpointer-arith -Wformat=2 -Wvla -Wno-unused-parameter
CFLAGS  += -std=c11 -D_GNU_SOURCE $(OPT) $(WARN) -fno-strict-aliasing -pthread -MMD -MP \
           -Isrc $(PKG_CFLAGS)
LDLIBS  += $(PKG_LIBS) -lm -pthread

ifeq ($(SAN),1)
CFLAGS  += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
LDFLAGS += -fsanitize=address,undefined
endif

AVX2_FLAGS   := -mavx2 -mfma -mf16c
AVX512_FLAGS := $(AVX2_FLAGS) -mavx512f -mavx512bw -mavx512vl -mavx512dq -mavx512vnni -mavx512bf16

LIB_SRC  := $(sort $(shell find src -name '*.c' -not -path 'src/cli/*'))
CLI_SRC  := $(sort $(wildcard src/cli/*.c))
TEST_SRC := $(sort $(wildcard tests/unit/test_*.c))
FUZZ_SRC := $(sort $(wildcard tests/fuzz/fuzz_*.c))

LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/obj/%.o)
CLI_OBJ  := $(CLI_SRC:%.c=$(BUILD)/obj/%.o)
LIB      := $(BUILD)/libshoal.a
BIN      := $(BUILD)/shoal
TESTS    := $(TEST_SRC:tests/unit/%.c=$(BUILD)/tests/%)

.PHONY: all deps run test unit models asan fuzz fuzz-build clang clean format bench-vecdot bench-tokenizer \
        bench-upstream bench-http-latency bench-sse-load bench-gemm bench-grammar
all: $(BIN)

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/obj/%_avx2.o: CFLAGS += $(AVX2_FLAGS)
$(BUILD)/obj/%_avx512.o: CFLAGS += $(AVX512_FLAGS)

$(LIB): $(LIB_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(BIN): $(CLI_OBJ) $(LIB)
	$(CC) $(LDFLAGS) -o $@ $(CLI_OBJ) $(LIB) $(LDLIBS)

$(BUILD)/tests/%: tests/unit/%.c $(LIB) tests/unit/testutil.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests/unit $(LDFLAGS) -o $@ $< $(LIB) -lcmocka $(LDLIBS)

deps:
	@bash scripts/deps.sh

run: deps
	@$(MAKE) --no-print-directory all
	@bash scripts/run-main.sh

# the shipped specialists: regenerate the case-study data and retrain models/ (scripts/train-models.sh;
# MODELS="assistant-tiny iot" retrains only those)
models:
	@$(MAKE) --no-print-directory all
	@bash scripts/train-models.sh $(MODELS)

unit: $(TESTS)
	@bash scripts/run-tests.sh unit $(TESTS)

test: deps
	@$(MAKE) --no-print-directory all $(TESTS)
	@bash scripts/run-tests.sh all

asan:
	@$(MAKE) --no-print-directory BUILD=build/asan SAN=1 unit

clang:
	@$(MAKE) --no-print-directory BUILD=build/clang CC=clang all $(TESTS:build/%=build/clang/%)

# ---- fuzzing (clang + libFuzzer) ----------------------------------------------------------
# The library is rebuilt with clang under ASan+UBSan with fuzzer coverage in build/fuzz; each
# tests/fuzz/fuzz_NAME.c becomes build/fuzz/fuzz_NAME.
ifeq ($(SAN),fuzz)
CFLAGS  += -fsanitize=address,undefined,fuzzer-no-link -fno-omit-frame-pointer -fno-sanitize-recover=all
endif
FUZZ_SECONDS ?= 60
FUZZ_BINS := $(FUZZ_SRC:tests/fuzz/%.c=build/fuzz/%)

build/fuzz/fuzz_%: tests/fuzz/fuzz_%.c $(LIB)
	$(CC) $(CFLAGS) -fsanitize=fuzzer -o $@ $< $(LIB) $(LDLIBS)

fuzz-build:
	@$(MAKE) --no-print-directory BUILD=build/fuzz CC=clang SAN=fuzz OPT="-O1 -g" $(FUZZ_BINS)

fuzz: fuzz-build
	@bash scripts/fuzz.sh $(FUZZ_SECONDS) $(FUZZ_BINS)

# kernel micro-benchmark (not a test): GB/s of matvec and GFLOP/s of matmul per type and ISA
bench-vecdot: $(LIB)
	@mkdir -p $(BUILD)/bench
	$(CC) $(CFLAGS) $(LDFLAGS) -o $(BUILD)/bench/bench_vecdot bench/bench_vecdot.c $(LIB) $(LDLIBS)
	$(BUILD)/bench/bench_vecdot $(BENCH_TYPES)

# tokenizer throughput (a benchmark, not a test): MB/s per vocabulary and the 1 MB no-space case
bench-tokenizer: $(LIB)
	@mkdir -p $(BUILD)/bench
	$(CC) $(CFLAGS) -o $(BUILD)/bench/bench_tokenizer bench/bench_tokenizer.c $(LIB) $(LDLIBS)
	$(BUILD)/bench/bench_tokenizer tests/data/vocab/*.gguf

# constrained-decoding mask cost (a benchmark, not a test): us per token, cold and warm, per
# vocabulary and workload, and the cost of applying a mask to a logits row
bench-grammar: $(LIB)
	@mkdir -p $(BUILD)/bench
	$(CC) $(CFLAGS) -o $(BUILD)/bench/bench_grammar bench/bench_grammar.c $(LIB) $(LDLIBS)
	$(BUILD)/bench/bench_grammar tests/data/vocab/ggml-vocab-llama-spm.gguf tests/data/vocab/ggml-vocab-qwen2.gguf

# upstream client round trips (a benchmark, not a test): p50/p99 us of BENCH_N small POSTs to
# an in-process server, next to a plain curl_easy_perform baseline
BENCH_N ?= 20000
bench-upstream: $(LIB)
	@mkdir -p $(BUILD)/bench
	$(CC) $(CFLAGS) -o $(BUILD)/bench/bench_upstream bench/bench_upstream.c $(LIB) $(LDLIBS)
	$(BUILD)/bench/bench_upstream $(BENCH_N)

# benchmark clients (no project code in them): paired HTTP latency (bench/router-bench.sh) and
# streaming load (bench/sse_load.c; bench/serve_load.py is the same from Python)
bench-sse-load: $(BUILD)/bench/sse_load
$(BUILD)/bench/sse_load: bench/sse_load.c
	@mkdir -p $(BUILD)/bench
	$(CC) -std=c11 -O2 -pthread $(WARN) -o $@ $<

# the trainer's matmuls against OpenBLAS (loaded at run time when installed)
bench-gemm: $(LIB)
	@mkdir -p $(BUILD)/bench
	$(CC) $(CFLAGS) -o $(BUILD)/bench/bench_gemm bench/bench_gemm.c $(LIB) $(LDLIBS) -ldl
	$(BUILD)/bench/bench_gemm $(BENCH_SHAPES)

bench-http-latency: $(BUILD)/bench/http_latency
$(BUILD)/bench/http_latency: bench/http_latency.c
	@mkdir -p $(BUILD)/bench
	$(CC) -std=c11 -O2 $(WARN) -o $@ $<

format:
	clang-format -i $$(find src tests -name '*.[ch]')

clean:
	rm -rf build

-include $(shell find $(BUILD)/obj $(BUILD)/tests -name '*.d' 2>/dev/null)
