#!/usr/bin/env python3
"""tests/install-deps.sh against stand-ins for dpkg-query, apt-get, apt-cache,
add-apt-repository, systemctl and update-rc.d (nothing on this machine changes): with every
package present it does nothing; with some missing on Ubuntu, where clang-14 has no candidate
until universe is enabled, it enables universe, installs exactly the missing packages in one
apt-get install, holds service starts off while installing (a policy-rc.d answering 101, gone
afterwards) and disables at boot the services it installed (munge, slurmd) and no other.
Usage: install_deps_test.py REPO"""
import os
import subprocess
import sys
import tempfile

REPO = os.path.abspath(sys.argv[1])
SCRIPT = os.path.join(REPO, "tests", "install-deps.sh")
TOOLS = {
    # installed packages: the file installed.txt, one per line
    "dpkg-query": 'grep -qx "${@: -1}" "$T/installed.txt" && echo "install ok installed"; exit 0',
    "apt-get": 'echo "apt-get $*" >> "$T/log"\n'
               'if [ "$1" = install ]; then\n'
               '  [ -x "$POLICY" ] && echo "policy $("$POLICY"; echo $?)" >> "$T/log"\n'
               '  for a in "$@"; do case $a in -*|install) ;; *) echo "$a" >> "$T/installed.txt" ;; esac; done\n'
               'fi',
    "apt-cache": 'if [ "$2" = clang-14 ] && [ ! -f "$T/universe" ]; then echo "  Candidate: (none)";'
                 ' else echo "  Candidate: 1.0"; fi',
    "add-apt-repository": 'echo "add-apt-repository $*" >> "$T/log"; touch "$T/universe"',
    "systemctl": 'echo "systemctl $*" >> "$T/log"',
    "update-rc.d": 'echo "update-rc.d $*" >> "$T/log"',
}
ALL = ["build-essential", "cmake", "git", "pkg-config", "openmpi-bin", "libopenmpi-dev",
       "libhdf5-dev", "hdf5-tools", "libgsl-dev", "python3", "python3-h5py", "python3-numpy",
       "python3-matplotlib", "clang-format-14", "clang-14", "libclang-rt-14-dev", "slurmctld",
       "slurmd", "slurm-client", "munge", "libpmix-dev", "iproute2"]


def run(d, installed, os_id):
    with open(os.path.join(d, "installed.txt"), "w") as f:
        f.write("".join(p + "\n" for p in installed))
    for name in ("log", "universe"):
        if os.path.exists(os.path.join(d, name)):
            os.remove(os.path.join(d, name))
    with open(os.path.join(d, "os-release"), "w") as f:
        f.write(f"ID={os_id}\nVERSION_ID=24.04\n")
    policy = os.path.join(d, "policy-rc.d")
    env = dict(os.environ, T=d, POLICY=policy, PATH=os.path.join(d, "bin") + ":" + os.environ["PATH"],
               ATTNSIM_OS_RELEASE=os.path.join(d, "os-release"), ATTNSIM_POLICY_RC_D=policy)
    r = subprocess.run(["bash", SCRIPT], capture_output=True, text=True, env=env)
    log = open(os.path.join(d, "log")).read().splitlines() if os.path.exists(
        os.path.join(d, "log")) else []
    return r, log, os.path.exists(policy)


def main():
    if os.geteuid() != 0:
        print("install_deps_test: needs root (the script uses sudo otherwise); skipped")
        return 77
    problems = []
    with tempfile.TemporaryDirectory() as d:
        os.makedirs(os.path.join(d, "bin"))
        for name, body in TOOLS.items():
            path = os.path.join(d, "bin", name)
            with open(path, "w") as f:
                f.write("#!/bin/bash\n" + body + "\n")
            os.chmod(path, 0o755)
        r, log, policy_left = run(d, ALL, "debian")
        if r.returncode != 0 or log or r.stdout or policy_left:
            problems.append(f"all present: status {r.returncode}, actions {log}, {r.stdout!r}")
        missing = ["clang-14", "munge", "slurmd", "python3-h5py"]
        r, log, policy_left = run(d, [p for p in ALL if p not in missing], "ubuntu")
        installs = [ln for ln in log if ln.startswith("apt-get") and " install " in f" {ln} "
                    and "software-properties-common" not in ln]
        want_pkgs = set(missing)
        got_pkgs = set(installs[0].split()[installs[0].split().index("install") + 1:]) - \
            {"-y", "-qq", "--no-install-recommends"} if installs else set()
        if r.returncode != 0:
            problems.append(f"missing packages: status {r.returncode}: {r.stderr}")
        if len(installs) != 1 or got_pkgs != want_pkgs:
            problems.append(f"apt-get install {got_pkgs}, expected {want_pkgs} ({log})")
        if "add-apt-repository -y universe" not in log or \
                log.index("add-apt-repository -y universe") > log.index(installs[0]):
            problems.append(f"universe not enabled before the install: {log}")
        if "policy 101" not in log:
            problems.append(f"services were not held off during the install: {log}")
        if policy_left:
            problems.append("the policy-rc.d it wrote was left behind")
        disabled = {ln.split()[-1] for ln in log if ln.startswith("systemctl disable")}
        rcd = {ln.split()[1] for ln in log if ln.startswith("update-rc.d")}
        if disabled != {"munge", "slurmd"} or rcd != {"munge", "slurmd"}:
            problems.append(f"disabled at boot {disabled} / {rcd}, expected munge and slurmd")
        if not log or not log[0].startswith("apt-get update"):
            problems.append(f"no apt-get update first: {log}")
    for p in problems:
        print("FAIL", p)
    print(f"install_deps_test: {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
