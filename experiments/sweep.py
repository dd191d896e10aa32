#!/usr/bin/env python3
"""Reads a study's sweep file (`key = value` lines, `#` comments) with Python's configparser,
checks every key against the study's list and every value against what attnsim accepts, and
prints the values, defaults filled in, as a bash associative array for experiments/lib.sh:

    declare -gA SWEEP_VALUES=([algos]='ring,a2d-no' [seq]='32k' ...)

An unknown key, a key given twice, a bad value or a missing required key: one line on stderr
naming the file, the line, the key and what is accepted, exit status 2, nothing on stdout.
    Usage: sweep.py STUDY FILE          (STUDY: a directory name under experiments/)
           sweep.py --keys STUDY        (the study's keys, defaults and accepted values)
"""
import ast
import configparser
import os
import re
import shlex
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
PRESETS = sorted(f[:-len(".machine")] for f in os.listdir(os.path.join(HERE, "..", "models",
                                                                        "machines"))
                 if f.endswith(".machine"))
COUNT = re.compile(r"^[1-9][0-9]*[kMG]?$")


def registry_algorithms():
    """The algorithms attnsim knows, in its order: the descriptors models/algorithms.def lists,
    named as their files in models/ name them (`.name = "..."`)."""
    models = os.path.join(HERE, "..", "models")
    with open(os.path.join(models, "algorithms.def")) as fh:
        descs = re.findall(r"^ATTNSIM_ALGORITHM\(\w+,\s*(\w+),", fh.read(), re.M)
    names = {}
    for f in sorted(os.listdir(models)):
        if f.startswith("algo_") and f.endswith(".c"):
            with open(os.path.join(models, f)) as fh:
                for desc, name in re.findall(
                        r"am_algo_desc\s+(\w+)\s*=\s*\{\s*\.name\s*=\s*\"([^\"]+)\"", fh.read()):
                    names[desc] = name
    return [names[d] for d in descs]


def count_ok(v):
    return bool(COUNT.match(v))


def one_of(*accepted):
    def check(v):
        return v in accepted
    check.accepted = "one of " + ", ".join(accepted)
    return check


def list_of(*accepted):
    def check(v):
        items = v.split(",")
        return all(i in accepted for i in items) and len(set(items)) == len(items)
    check.accepted = "a comma list of " + ", ".join(accepted)
    return check


def counts(v):
    return all(count_ok(x) for x in v.split(","))


counts.accepted = "a comma list of positive counts (k, M, G: powers of two; 4k = 4096)"


def count(v):
    return count_ok(v)


count.accepted = "a positive count (k, M, G: powers of two; 4k = 4096)"


def machine(v):
    return v in PRESETS or os.path.isfile(v)


machine.accepted = f"a preset ({', '.join(PRESETS)}) or a machine file"

YES_NO = one_of("yes", "no")
ALGOS = list_of(*registry_algorithms())
SHAPE = {
    "batch": (count, "1"), "heads": (count, None), "kv_heads": (count, "heads"),
    "head_dim": (counts, None), "causal": (one_of("yes", "no", "both"), "no"),
    "pass": (one_of("fwd", "bwd", "train"), "fwd"), "dtype": (list_of("f32", "f16", "bf16"), None),
}
RUN = {
    # auto: cuda with nccl where attnsim sees a GPU, else cpu with mpi (experiments/lib.sh)
    "backend": (one_of("auto", "cpu", "cuda"), "auto"),
    "comm": (one_of("auto", "mpi", "nccl"), "auto"),
    "check": (YES_NO, "no"),
}
# study -> {key: (check, default)}; default None: required; a key's name as default: its value
STUDIES = {
    "strong-scaling": {"algos": (ALGOS, "ring,a2d-no,a2d-o,ulysses"),
                       "layouts": (list_of("contiguous", "striped", "zigzag"), "contiguous"),
                       "seq": (counts, None), "machine": (machine, "dgx-h100"),
                       "model_procs": (counts, "1,4,16,64,256,1024"), **SHAPE, **RUN},
    "cpu-scaling": {"algos": (ALGOS, "ring,a2d-no,a2d-o,ulysses"),
                    "layouts": (list_of("contiguous", "striped", "zigzag"), "contiguous"),
                    "seq": (counts, None), "base_machine": (machine, "dgx-h100"),
                    "max_message": (count, "4M"),
                    "model_procs": (counts, "1,4,16,64,256,1024"), **SHAPE,
                    "check": (YES_NO, "yes"), "backend": (one_of("cpu"), "cpu"),
                    "comm": (one_of("mpi"), "mpi")},
    "weak-scaling": {"algos": (ALGOS, "ring,a2d-no,a2d-o,ulysses"),
                     "seq_base": (count, None), "growth": (one_of("sqrt", "linear"), "sqrt"),
                     "machine": (machine, "dgx-h100"), **SHAPE, **RUN},
    "model-validation": {"algos": (ALGOS, "ring,a2d-no,a2d-o"), "seq": (counts, None),
                         "base_machine": (machine, "dgx-h100"), "max_message": (count, "64M"),
                         **SHAPE, **RUN},
    "kernel-study": {"kernels": (list_of("standard", "fa1", "fa2"), "standard,fa1,fa2"),
                     "seq": (counts, None), "sram": (counts, "32k"),
                     "backend": RUN["backend"], "check": (YES_NO, "yes"),
                     "dram": (YES_NO, "no"),
                     **{k: SHAPE[k] for k in ("batch", "heads", "head_dim", "causal", "dtype")},
                     "pass": (one_of("fwd", "bwd", "train"), "train")},
}
PROG = "sweep"


def die(msg):
    print(msg, file=sys.stderr)
    sys.exit(2)


def line_of(text, key):
    for i, raw in enumerate(text.splitlines(), 1):
        if re.match(rf"^\s*{re.escape(key)}\s*=", raw):
            return i
    return 0


def parse(study, path):
    keys = STUDIES[study]
    try:
        with open(path) as fh:
            text = fh.read()
    except OSError as e:
        die(f"{study}: cannot read the sweep file {path} ({e.strerror})")
    cp = configparser.ConfigParser(delimiters=("=",), comment_prefixes=("#",),
                                   inline_comment_prefixes=("#",), interpolation=None,
                                   strict=True, empty_lines_in_values=False)
    cp.optionxform = str  # keys are case-sensitive, as attnsim's options
    try:
        cp.read_string("[sweep]\n" + text, source=path)
    except configparser.DuplicateOptionError as e:
        die(f"{study}: {path} line {e.lineno - 1}: '{e.option}' is given twice; one value "
            f"per key")
    except configparser.ParsingError as e:
        lineno, line = e.errors[0]
        line = ast.literal_eval(line).strip()
        die(f"{study}: {path} line {lineno - 1}: '{line}' is not a 'key = value' line; accepted: "
            f"key = value, # comments")
    except configparser.Error as e:
        die(f"{study}: {path}: {' '.join(str(e).split())}; accepted: key = value lines, "
            f"# comments")
    if cp.sections() != ["sweep"]:
        die(f"{study}: {path}: a [section] line; accepted: key = value lines only")
    given = dict(cp.items("sweep"))
    values = {}
    for k, v in given.items():
        if k not in keys:
            die(f"{study}: {path} line {line_of(text, k)}: unknown key '{k}'; accepted: "
                f"{', '.join(sorted(keys))}")
        check = keys[k][0]
        v = re.sub(r"\s*,\s*", ",", v.strip())
        if "\n" in v or not v or not check(v):
            die(f"{study}: {path} line {line_of(text, k)}: {k} = '{v}' is not accepted; "
                f"{k} takes {check.accepted}")
        values[k] = v
    for k, (check, default) in keys.items():
        if k in values:
            continue
        if default is None:
            die(f"{study}: {path}: no '{k}' (required); {k} takes {check.accepted}")
        values[k] = values.get(default, default) if default in keys else default
    if "seq_base" in values:  # used in shell arithmetic: the number itself
        v = values["seq_base"]
        values["seq_base"] = str(int(v.rstrip("kMG")) << {"k": 10, "M": 20, "G": 30}.get(v[-1], 0))
    if values.get("backend") == "cpu" and values.get("comm") == "nccl":
        die(f"{study}: {path} line {line_of(text, 'comm')}: comm = nccl needs backend = cuda "
            f"(or auto); accepted with backend = cpu: comm = mpi or auto")
    return values


def main(argv):
    if len(argv) == 3 and argv[1] == "--keys" and argv[2] in STUDIES:
        for k, (check, default) in sorted(STUDIES[argv[2]].items()):
            print(f"{k:14s} default {default if default is not None else '(required)':28s} "
                  f"{check.accepted}")
        return 0
    if len(argv) != 3 or argv[1] not in STUDIES:
        die(f"usage: sweep.py STUDY FILE | --keys STUDY; STUDY: {', '.join(sorted(STUDIES))}")
    values = parse(argv[1], argv[2])
    print("declare -gA SWEEP_VALUES=(" + " ".join(f"[{k}]={shlex.quote(v)}"
                                                  for k, v in sorted(values.items())) + ")")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
