"""Run one fuzz target under atheris (libFuzzer), or every target's seeds once.

    .venv/bin/python -m fuzz TARGET [libFuzzer options]   e.g. -runs=1000000 -max_len=4096
    .venv/bin/python -m fuzz --list
    .venv/bin/python -m fuzz --seeds                     each target on its seeds, no atheris

The corpus the run grows goes to a temporary directory unless a directory is given after the
target (libFuzzer's convention: the first directory is written to). A crash or a broken
property makes libFuzzer write the input to ``crash-*`` and exit non-zero.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 2
    if argv[0] == "--list":
        from fuzz.targets import TARGETS

        print("\n".join(TARGETS))
        return 0
    if argv[0] == "--seeds":
        from fuzz.targets import SEEDS, TARGETS

        for name, fn in TARGETS.items():
            for seed in SEEDS.get(name, []):
                fn(seed)
        return 0
    import atheris

    with atheris.instrument_imports(include=["hongyan"]):
        from fuzz.targets import SEEDS, TARGETS
    name, rest = argv[0], argv[1:]
    if name not in TARGETS:
        print(f"unknown target {name!r}; one of: {', '.join(TARGETS)}", file=sys.stderr)
        return 2
    dirs = [a for a in rest if not a.startswith("-")]
    options = [a for a in rest if a.startswith("-")]
    with tempfile.TemporaryDirectory(prefix=f"fuzz-{name}-") as tmp:
        corpus = Path(dirs[0]) if dirs else Path(tmp)
        corpus.mkdir(parents=True, exist_ok=True)
        for i, seed in enumerate(SEEDS.get(name, [])):
            (corpus / f"seed-{i}").write_bytes(seed)
        atheris.Setup([sys.argv[0], *options, str(corpus), *dirs[1:]], TARGETS[name])
        atheris.Fuzz()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
