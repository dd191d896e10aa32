#!/usr/bin/env bash
# The test command (README, .ci/run): installs the dependencies, builds attnsim twice -
# release with warnings as errors, and AddressSanitizer + UndefinedBehaviorSanitizer - and runs
# every test that needs no GPU in both builds. GPU tests: ctest -L gpu on a GPU machine.
set -euo pipefail
cd "$(dirname "$0")/.."
tests/install-deps.sh
jobs=$(nproc)
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

echo "== release build (-Wall -Wextra -Werror)"
cmake -S . -B build -DATTNSIM_WERROR=ON >/dev/null
cmake --build build -j"$jobs"
(cd build && ctest -LE 'gpu|multigpu' --output-on-failure -j"$jobs")

echo "== ASan + UBSan build"
cmake -S . -B build-asan -DATTNSIM_SANITIZE=ON -DATTNSIM_WERROR=ON -DATTNSIM_CUDA=OFF \
      -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build-asan -j"$jobs"
# LeakSanitizer stays on everywhere. Open MPI keeps its MPI_Init allocations until exit: those,
# and only frames inside Open MPI's libraries, are suppressed (tests/lsan-openmpi.supp). Full
# unwinding and loaded components let the suppressions see Open MPI's frames. The emulated
# cluster's tests (label cluster) run in the release build only: they drive the same code as
# the mpi label across namespaces, and take minutes.
export OMPI_MCA_mca_base_component_disable_dlclose=1
supp="$(pwd)/tests/lsan-openmpi.supp"
(cd build-asan && ASAN_OPTIONS=detect_leaks=1:fast_unwind_on_malloc=0 \
   LSAN_OPTIONS=suppressions=$supp:print_suppressions=0 \
   UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
   ctest -LE 'gpu|multigpu|format|cluster' --output-on-failure -j"$jobs")
echo "== fuzzing (libFuzzer, clang, ASan + UBSan; ${ATTNSIM_FUZZ_SECONDS:-30} s per harness)"
cmake -S . -B build-fuzz -DCMAKE_C_COMPILER=clang-14 -DATTNSIM_FUZZ=ON -DATTNSIM_CUDA=OFF \
      -DATTNSIM_WERROR=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo \
      -DATTNSIM_FUZZ_SECONDS="${ATTNSIM_FUZZ_SECONDS:-30}" >/dev/null
cmake --build build-fuzz -j"$jobs" --target fuzz_values fuzz_machine fuzz_cli fuzz_h5
rm -rf build-fuzz/tests/fuzz-work
(cd build-fuzz && ctest -L fuzz --output-on-failure -j"$jobs")
echo "tests/run.sh: all tests passed (release, sanitizer and fuzzing builds)"
