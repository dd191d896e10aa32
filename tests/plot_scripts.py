#!/usr/bin/env python3
"""The plot scripts run as written, from any directory: each plots/*.py program is executable
with a `#!/usr/bin/env python3` line; run by path with a python3 first on PATH that lacks h5py
(as a pyenv or venv Python does), it re-executes itself with a Python that has h5py and draws;
when no Python has it, it says so on one line (naming what to install, not claiming it is
missing from the Python that has it) and exits 2.
Usage: plot_scripts.py ATTNSIM PLOTS_DIR"""
import os
import stat
import subprocess
import sys
import tempfile

ATTNSIM, PLOTS = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
PROGRAMS = ["gallery.py", "model_error.py", "plot_run.py", "plot_kernels.py"]


def main():
    problems = []
    for name in PROGRAMS:
        path = os.path.join(PLOTS, name)
        with open(path) as f:
            first = f.readline().rstrip("\n")
        if first != "#!/usr/bin/env python3" or not os.stat(path).st_mode & stat.S_IXUSR:
            problems.append(f"{name}: not executable or no '#!/usr/bin/env python3' line")
    with tempfile.TemporaryDirectory() as d:
        # a python3 without h5py first on PATH: the system's, with its site packages off
        fake = os.path.join(d, "bin")
        os.makedirs(fake)
        with open(os.path.join(fake, "python3"), "w") as f:
            f.write(f"#!/bin/sh\nexec {sys.executable} -S \"$@\"\n")
        os.chmod(os.path.join(fake, "python3"), 0o755)
        env = dict(os.environ, PATH=fake + os.pathsep + os.environ["PATH"])
        env.pop("ATTNSIM_PLOT_REEXEC", None)
        env.pop("ATTNSIM_PYTHON", None)
        probe = subprocess.run(["python3", "-c", "import h5py"], env=env, capture_output=True)
        if probe.returncode == 0:
            problems.append("the fake python3 imports h5py: the test cannot check the launcher")
        h5 = os.path.join(d, "m.h5")
        subprocess.run([ATTNSIM, "model", "--algo", "ring", "--procs", "2,4", "--seq", "1k",
                        "--out", h5], check=True, capture_output=True)
        out = os.path.join(d, "g")
        work = os.path.join(d, "elsewhere")  # not the checkout: the module is found anyway
        os.makedirs(work)
        r = subprocess.run([os.path.join(PLOTS, "gallery.py"), h5, "-o", out, "--attnsim",
                            ATTNSIM], env=env, cwd=work, capture_output=True, text=True)
        if r.returncode != 0 or not os.path.exists(os.path.join(out, "scaling.png")):
            problems.append(f"gallery.py by path with python3 lacking h5py: status "
                            f"{r.returncode}, {r.stderr!r}")
        # no Python with h5py at all (the re-execution already tried): one line, status 2
        env1 = dict(env, ATTNSIM_PLOT_REEXEC="1")
        for name in PROGRAMS:
            r = subprocess.run([os.path.join(PLOTS, name), h5], env=env1, cwd=work,
                               capture_output=True, text=True)
            if r.returncode != 2 or r.stderr.count("\n") != 1 or "has no h5py" not in r.stderr \
                    or "install" not in r.stderr or r.stdout:
                problems.append(f"{name} without h5py: status {r.returncode}, {r.stderr!r}")
    for p in problems:
        print("FAIL", p)
    print(f"plot_scripts: {len(PROGRAMS)} programs, {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
