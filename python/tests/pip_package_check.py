"""The pip-installed dip (scripts/test.sh's .venv/) is this source tree's package.

Usage: <venv>/bin/python pip_package_check.py <version> <source python/dip>
From an empty temporary directory, with no PYTHONPATH, the interpreter imports dip from its own
site-packages; dip.__version__ is <version>; every .py file of the source package, subpackages
included, is installed unchanged (otherwise the venv is stale: rerun scripts/test.sh); and
dip.torch imports when the source has it. ctest test `pip_package` (python/CMakeLists.txt).
"""

import filecmp
import json
import os
import pathlib
import subprocess
import sys
import tempfile

PROBE = r"""
import json, sysconfig, dip
info = {"version": dip.__version__, "file": dip.__file__, "extension": dip._dip.__file__,
        "site": sorted({sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]})}
try:
    import dip.torch
    info["torch"] = dip.torch.__file__
except Exception as error:  # no dip.torch, or it fails to import
    info["torch"] = None
    info["torch_error"] = repr(error)
print(json.dumps(info))
"""


def main():
    version, source = sys.argv[1], pathlib.Path(sys.argv[2]).resolve()
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    with tempfile.TemporaryDirectory(prefix="dip-pip-package-") as cwd:
        result = subprocess.run([sys.executable, "-c", PROBE], cwd=cwd, env=env,
                                capture_output=True, text=True)
    if result.returncode != 0:
        return fail(f"`import dip` fails under {sys.executable} (run scripts/test.sh, or "
                    f"pip install . into that environment):\n{result.stderr}")
    info = json.loads(result.stdout)
    installed = pathlib.Path(info["file"]).resolve().parent
    errors = []
    if info["version"] != version:
        errors.append(f"dip.__version__ is {info['version']}, the build tree's is {version}")
    if not any(installed.parent == pathlib.Path(site).resolve() for site in info["site"]):
        errors.append(f"dip was imported from {installed}, not from {sys.executable}'s site-packages "
                      f"{info['site']}")
    if pathlib.Path(info["extension"]).resolve().parent != installed:
        errors.append(f"dip._dip is {info['extension']}, not in {installed}")
    for file in sorted(source.rglob("*.py")):
        relative = file.relative_to(source)
        copy = installed / relative
        if not copy.is_file():
            errors.append(f"dip/{relative} is not installed")
        elif not filecmp.cmp(file, copy, shallow=False):
            errors.append(f"dip/{relative} differs from the installed copy {copy}")
    if (source / "torch" / "__init__.py").is_file() and info["torch"] is None:
        errors.append(f"import dip.torch fails: {info.get('torch_error')}")
    if errors:
        return fail("\n".join(errors) + "\n(a stale .venv/: rerun scripts/test.sh, or pip install '.[torch,test]')")
    print(f"dip {info['version']} installed in {installed}"
          + (f"; dip.torch {info['torch']}" if info["torch"] else ""))
    return 0


def fail(message):
    print(f"pip_package: {message}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
