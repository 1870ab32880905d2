# Thin wrapper over CMake for the README's commands.
#   make            build (release) into build/
#   make demo       build, then answer a question with the embedded model
#   make test       release build + tests, then ASan/UBSan build + tests
#   make bench      benchmarks (slow; prints ratios)
BUILD   ?= build
SANBUILD ?= build-san
JOBS    ?= $(shell nproc)

.PHONY: all deps demo test test-release test-san bench clean

all:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release >/dev/null
	cmake --build $(BUILD) -j $(JOBS)

deps:
	bash scripts/install-deps.sh

# The demo builds only the CLI (not the tests), then asks the embedded model a question.
demo:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release >/dev/null
	cmake --build $(BUILD) -j $(JOBS) --target dsv4
	./$(BUILD)/dsv4 run -p "What is 12 + 30?"

test-release: all
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

test-san:
	cmake -S . -B $(SANBUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DDSV4_SANITIZE=ON >/dev/null
	cmake --build $(SANBUILD) -j $(JOBS)
	cd $(SANBUILD) && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
		ctest --output-on-failure -j $(JOBS) -LE nosan

test: test-release test-san

bench: all
	bash bench/run.sh

clean:
	rm -rf $(BUILD) $(SANBUILD)
