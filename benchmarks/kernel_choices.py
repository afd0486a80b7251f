"""Print the 3x3-convolution kernels mrcnn chose on this machine (``mrcnn.kernels.autotune``'s cache).

Run a benchmark first (it measures and caches the choices), with the same ``--isa``:

    python benchmarks/bench_inference.py --isa avx2 --runs 3
    python benchmarks/kernel_choices.py --isa avx2 [--markdown FILE]

Prints one Markdown row per problem: the timing shape, forward or forward+backward, the best time of
each candidate and the choice.
"""

import argparse
import json
import sys

from common import REPO, add_isa_argument, apply_isa_from_argv

apply_isa_from_argv()
sys.path.insert(0, str(REPO))

from mrcnn.kernels import autotune  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_isa_argument(parser)
    parser.add_argument("--markdown", default=None, help="also write the table here")
    args = parser.parse_args(argv)
    path = autotune.cache_path()
    key = autotune.machine_key()
    choices = json.loads(path.read_text()).get(key, {}) if path and path.is_file() else {}
    if not choices:
        print(f"No choices cached for {key!r} in {path}; run a benchmark with the same --isa first.")
        return 1
    names = ["default", "winograd", "winograd4"]
    lines = [
        f"Kernel choices for `{key}` (best of {autotune.ROUNDS} runs, ms; `{path}`):",
        "",
        "| problem | " + " | ".join(names) + " | chosen |",
        "|---|" + "---|" * (len(names) + 1),
    ]
    for problem, record in sorted(choices.items()):
        times = [f"{record['seconds'][n] * 1e3:.1f}" if n in record["seconds"] else "" for n in names]
        lines.append(f"| {problem} | " + " | ".join(times) + f" | {record['choice']} |")
    text = "\n".join(lines)
    print(text)
    if args.markdown:
        with open(args.markdown, "w") as handle:
            handle.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
