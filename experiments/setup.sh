# Sourced by the experiment scripts: installs the dependencies (idempotent), builds attnsim in
# build/, and sets $py to a Python that has h5py and matplotlib (Debian installs them for
# /usr/bin/python3, which may not be the python3 on PATH).
tests/install-deps.sh
cmake -S . -B build >/dev/null
cmake --build build -j"$(nproc)" >/dev/null
py=python3
/usr/bin/python3 -c 'import h5py, matplotlib' 2>/dev/null && py=/usr/bin/python3
