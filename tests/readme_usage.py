#!/usr/bin/env python3
"""The README shows what the program does: each `<!-- attnsim ... --help -->` block equals that
command's --help output, and each `<!-- example: COMMAND -->` block is COMMAND's output - every
line of a deterministic example (attnsim model), and for the others every line without digits
(titles and table headers) verbatim and every table row with the columns of the program's row
of the same name.
Usage: readme_usage.py ATTNSIM MPIEXEC README [--write]
  --write  regenerates the blocks from the program (the way the README's are made)."""
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile

ATTNSIM, MPIEXEC, README = os.path.abspath(sys.argv[1]), sys.argv[2], sys.argv[3]
WRITE = "--write" in sys.argv[4:]
ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
MARK = re.compile(r"^<!-- (attnsim[^>]*--help|example: [^>]*) -->\n```\n(.*?)```\n", re.M | re.S)


WORK = tempfile.mkdtemp(prefix="attnsim-readme-")


def run(command):
    """The command's stdout, with `attnsim` the binary under test and `mpirun` the MPI
    launcher (oversubscribed; root allowed through the environment), run in a directory of its
    own; a command that names mine.machine gets it from `attnsim calibrate` first, as the
    README's example does."""
    if "mine.machine" in command and "calibrate" not in command and \
            not os.path.exists(os.path.join(WORK, "mine.machine")):
        run("mpirun -n 4 attnsim calibrate --max-message 1M --machine-out mine.machine")
    words = shlex.split(command)
    argv = []
    for w in words:
        if w == "attnsim":
            argv.append(ATTNSIM)
        elif w == "mpirun":
            argv += [MPIEXEC, "--oversubscribe"]
        else:
            argv.append(w)
    r = subprocess.run(argv, capture_output=True, text=True, env=ENV, timeout=300, cwd=WORK)
    if r.returncode != 0:
        raise SystemExit(f"FAIL {command}: status {r.returncode}\n{r.stdout}{r.stderr}")
    return r.stdout


def shown(command):
    """The command as the README shows it: the binary of a build in the checkout."""
    return "$ " + command.replace("attnsim", "build/attnsim", 1)


def block(mark):
    if mark.endswith("--help"):
        return run(mark)
    command = mark[len("example: "):]
    return shown(command) + "\n" + run(command)


def check(mark, text):
    """Problems of one block against the program."""
    if mark.endswith("--help"):
        want = run(mark)
        return [] if text == want else [f"'{mark}' block differs from the program's output"]
    command = mark[len("example: "):]
    lines = text.splitlines()
    if not lines or lines[0] != shown(command):
        return [f"example '{command}': first line {lines[:1]}, expected {shown(command)!r}"]
    out = run(command).splitlines()
    if " model " in f" {command} ":
        return [] if lines[1:] == out else [f"example '{command}' differs from its output"]
    bad = []
    rows = {ln.split()[0]: ln.split() for ln in out if ln.strip() and not ln.startswith("#")}
    for ln in lines[1:]:
        if ln.startswith("#") and not re.search(r"\d", ln):
            if ln not in out:
                bad.append(f"example '{command}': line {ln!r} is not in the output")
        elif ln.strip() and not ln.startswith("#") and ln.strip() != "...":
            f = ln.split()
            if f[0] not in rows or len(rows[f[0]]) != len(f):
                bad.append(f"example '{command}': row {ln!r} has not the columns of "
                           f"{rows.get(f[0])}")
    return bad


def main():
    text = open(README).read()
    marks = list(MARK.finditer(text))
    helps = {m.group(1) for m in marks if m.group(1).endswith("--help")}
    problems = []
    for cmd in ("attnsim --help", "attnsim run --help", "attnsim model --help",
                "attnsim kernels --help", "attnsim calibrate --help"):
        if cmd not in helps:
            problems.append(f"README has no '<!-- {cmd} -->' block")
    if WRITE:
        out, last = [], 0
        for m in marks:
            out += [text[last:m.start()], f"<!-- {m.group(1)} -->\n```\n{block(m.group(1))}```\n"]
            last = m.end()
        out.append(text[last:])
        with open(README, "w") as f:
            f.write("".join(out))
        shutil.rmtree(WORK, ignore_errors=True)
        print(f"readme_usage: wrote {len(marks)} blocks")
        return 0
    for m in marks:
        problems += check(m.group(1), m.group(2))
    shutil.rmtree(WORK, ignore_errors=True)
    for p in problems:
        print("FAIL", p)
    print(f"readme_usage: {len(marks)} blocks, {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
