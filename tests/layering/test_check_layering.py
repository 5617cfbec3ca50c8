#!/usr/bin/env python3
"""check_layering.py must fail, naming file and line, on an include against the layer order,
and pass on a tree whose includes follow it (a small tree built in a temporary folder)."""
import pathlib
import subprocess
import sys
import tempfile

CHECK = pathlib.Path(__file__).resolve().parent / "check_layering.py"


def run(tree):
    with tempfile.TemporaryDirectory() as root:
        for name, text in tree.items():
            path = pathlib.Path(root, name)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        out = subprocess.run([sys.executable, str(CHECK), root], capture_output=True, text=True)
        return out.returncode, out.stdout + out.stderr


good = {"dip/core/a.hpp": "#pragma once\n",
        "dip/schedule/b.hpp": '#pragma once\n#include "dip/core/a.hpp"\n',
        "dip/sim/c.hpp": '#pragma once\n#include <dip/schedule/b.hpp>\n'}
rc, out = run(good)
assert rc == 0, f"a tree in order failed: {out}"

reversed_tree = dict(good)
reversed_tree["dip/schedule/b.hpp"] = '#pragma once\n#include "dip/core/a.hpp"\n#include "dip/sim/c.hpp"\n'
rc, out = run(reversed_tree)
assert rc != 0, "a schedule/ header including sim/ passed"
assert "dip/schedule/b.hpp:3:" in out and "dip/sim/c.hpp" in out, f"the failure does not name file and line: {out}"

umbrella = dict(good)
umbrella["dip/model/m.hpp"] = '#pragma once\n#include "dip/dip.hpp"\n'
rc, out = run(umbrella)
assert rc != 0 and "dip/model/m.hpp:2:" in out, f"including the umbrella passed: {out}"
print("check_layering.py passes an ordered tree and names reversed includes")
