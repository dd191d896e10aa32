# Sourced by the local experiment scripts: installs the dependencies (idempotent: nothing when
# they are there), builds attnsim in build/ showing its progress, and sets $py to a Python that
# has h5py and matplotlib (Debian installs them for /usr/bin/python3, which may not be the
# python3 on PATH).
tests/install-deps.sh
setup_build() {
  local log=build/build.log t0=$SECONDS last="" pct pid
  mkdir -p build
  echo "== building attnsim in build/ (the first build takes about 1 min on 2 cores, 3 min with" \
       "CUDA where nvcc is found; later ones seconds); log: build/build.log"
  if ! cmake -S . -B build >"$log" 2>&1; then
    echo "cmake failed; the last lines of $log:" >&2
    tail -n 30 "$log" >&2
    exit 1
  fi
  cmake --build build -j"$(nproc)" >>"$log" 2>&1 &
  pid=$!
  while kill -0 "$pid" 2>/dev/null; do
    sleep 2
    pct=$(grep -o '^\[ *[0-9]*%\]' "$log" | tail -n 1 | tr -dc '0-9')
    if [ -n "$pct" ] && [ "$pct" != "$last" ]; then
      echo "   build ${pct}% ($((SECONDS - t0)) s)"
      last=$pct
    fi
  done
  if ! wait "$pid"; then
    echo "the build failed; the last lines of $log:" >&2
    tail -n 30 "$log" >&2
    exit 1
  fi
  echo "   built in $((SECONDS - t0)) s"
}
setup_build
py=python3
/usr/bin/python3 -c 'import h5py, matplotlib' 2>/dev/null && py=/usr/bin/python3
