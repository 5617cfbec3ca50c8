#!/usr/bin/env python3
"""The folders of include/dip depend on each other one way, in the order of the data flow.

Reads every #include of dip's own headers in include/dip (and the reference executor's
dip/exec) and fails, naming the file and line, on an include that goes against ORDER: a header
may include headers of its own folder and of folders before it, never of a folder after it.
dip/dip.hpp is the umbrella (it may include anything, nothing includes it); dip/version.hpp
belongs to core. docs/architecture.md states the same order.

  check_layering.py INCLUDE_DIR [INCLUDE_DIR...]
"""
import pathlib
import re
import sys

ORDER = ["core", "model", "cost", "batch", "partition", "schedule", "sim", "planner", "io", "exec"]
UMBRELLA = "dip/dip.hpp"
INCLUDE = re.compile(r'^\s*#\s*include\s*[<"](dip/[^>"]+)[>"]')


def layer_of(path):
    """The layer of a header named like dip/<folder>/..., or None for the umbrella."""
    if path == UMBRELLA:
        return None
    parts = path.split("/")
    if len(parts) == 2:  # dip/version.hpp
        return "core"
    if parts[1] not in ORDER:
        raise SystemExit(f"{path}: folder '{parts[1]}' is not in the layer order {ORDER}: add it there")
    return parts[1]


def main():
    roots = [pathlib.Path(p) for p in sys.argv[1:]]
    violations, checked = [], 0
    for root in roots:
        for header in sorted(root.glob("dip/**/*.hpp")):
            name = header.relative_to(root).as_posix()
            here = layer_of(name)
            for number, line in enumerate(header.read_text().splitlines(), 1):
                match = INCLUDE.match(line)
                if not match:
                    continue
                checked += 1
                target = match.group(1)
                if target == UMBRELLA:
                    violations.append(f"{header}:{number}: includes the umbrella {UMBRELLA}")
                    continue
                if here is None:
                    continue
                there = layer_of(target)
                if ORDER.index(there) > ORDER.index(here):
                    violations.append(f"{header}:{number}: {here}/ includes {target}, a later layer ({there}/); "
                                      f"order: {' <- '.join(ORDER)}")
    for v in violations:
        print(v)
    if violations:
        sys.exit(f"{len(violations)} includes against the layer order")
    print(f"{checked} includes follow the layer order {' <- '.join(ORDER)}")


if __name__ == "__main__":
    main()
