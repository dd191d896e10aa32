#!/usr/bin/env bash
# The test command (README, .ci/run): installs the dependencies up front, builds attnsim twice -
# release with warnings as errors, and AddressSanitizer + UndefinedBehaviorSanitizer - and runs
# every test that needs no GPU in both builds, then fuzzes. About 32 minutes on 2 idle cores
# (a few more the first time, for apt-get). GPU tests: ctest -L gpu on a GPU machine.
set -euo pipefail
cd "$(dirname "$0")/.."
t_all=$SECONDS
t_stage=$SECONDS
jobs=$(nproc)
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

# stage N TEXT: closes the previous stage (its time) and announces the next
stage() {
  local now=$SECONDS
  [ "$1" -gt 1 ] && echo "   (stage took $(((now - t_stage) / 60)) min $(((now - t_stage) % 60)) s)"
  t_stage=$now
  echo "== tests/run.sh $1/7 ($(((now - t_all) / 60)) min in): $2"
}

echo "tests/run.sh: about 24 min on 2 idle cores ($jobs here): dependencies, release build and" \
     "tests, ASan+UBSan build and tests, fuzzing"
stage 1 "dependencies (tests/install-deps.sh: apt-get, only what is missing)"
tests/install-deps.sh

stage 2 "release build (-Wall -Wextra -Werror; CUDA too where nvcc is found), build/"
cmake -S . -B build -DATTNSIM_WERROR=ON >/dev/null
cmake --build build -j"$jobs"

stage 3 "release tests (ctest, every label but gpu and multigpu: about 10 min, 3 of them the emulated cluster's)"
(cd build && ctest -LE 'gpu|multigpu' --output-on-failure -j"$jobs")

stage 4 "ASan + UBSan build, build-asan/"
cmake -S . -B build-asan -DATTNSIM_SANITIZE=ON -DATTNSIM_WERROR=ON -DATTNSIM_CUDA=OFF \
      -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build-asan -j"$jobs"

stage 5 "ASan + UBSan tests (the same tests but format, Slurm, emulated cluster and benchmarks: about 18 min)"
# LeakSanitizer stays on everywhere. Open MPI keeps its MPI_Init allocations until exit: those,
# and only frames inside Open MPI's libraries, are suppressed (tests/lsan-openmpi.supp). Full
# unwinding and loaded components let the suppressions see Open MPI's frames. The emulated
# cluster's tests (label cluster) run in the release build only: they drive the same code as
# the mpi label across namespaces, and take minutes.
export OMPI_MCA_mca_base_component_disable_dlclose=1
supp="$(pwd)/tests/lsan-openmpi.supp"
# The scan leaves thread-local storage out (use_tls=0): GCC 12's LeakSanitizer, on some kernels,
# reads a bogus dynamic-TLS range of a library Open MPI loaded and its tracer crashes ("Tracer
# caught signal 11"), at random, not in every command. What libraries keep per
# thread, reachable only from thread-specific data, is suppressed (tests/lsan-tls.supp: HDF5's
# error stacks and API contexts); every other leak is still reported.
cat "$supp" tests/lsan-tls.supp >build-asan/lsan.supp
supp="$(pwd)/build-asan/lsan.supp"
(cd build-asan && ASAN_OPTIONS=detect_leaks=1:fast_unwind_on_malloc=0 \
   LSAN_OPTIONS=suppressions=$supp:print_suppressions=0:use_tls=0 \
   UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
   ctest -LE 'gpu|multigpu|format|slurm|bench|cluster' --output-on-failure -j"$jobs")

stage 6 "fuzzing build (libFuzzer, clang-14, ASan + UBSan), build-fuzz/"
cmake -S . -B build-fuzz -DCMAKE_C_COMPILER=clang-14 -DATTNSIM_FUZZ=ON -DATTNSIM_CUDA=OFF \
      -DATTNSIM_WERROR=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo \
      -DATTNSIM_FUZZ_SECONDS="${ATTNSIM_FUZZ_SECONDS:-30}" >/dev/null
cmake --build build-fuzz -j"$jobs" --target fuzz_values fuzz_machine fuzz_cli fuzz_h5

stage 7 "fuzzing (${ATTNSIM_FUZZ_SECONDS:-30} s per harness, 4 harnesses)"
rm -rf build-fuzz/tests/fuzz-work
(cd build-fuzz && ctest -L fuzz --output-on-failure -j"$jobs")
t=$((SECONDS - t_all))
echo "   (stage took $(((SECONDS - t_stage) / 60)) min $(((SECONDS - t_stage) % 60)) s)"
echo "tests/run.sh: all tests passed (release, sanitizer and fuzzing builds) in $((t / 60)) min" \
     "$((t % 60)) s"
