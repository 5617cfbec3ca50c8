"""python -m dip.torch COMMAND: `verify` (verify.py) checks dip plans on torch ranks against the
sequential model; `bench` (bench.py) calibrates dip on this machine and measures plans against
their simulation."""

import sys

COMMANDS = ("verify", "bench")


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        print("usage: python -m dip.torch {verify,bench} [options]   (python -m dip.torch verify --help)",
              file=sys.stderr if argv and argv[0] not in ("-h", "--help") else sys.stdout)
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    if argv[0] == "bench":
        from . import bench

        return bench.main(argv[1:])
    from . import verify

    return verify.main(argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
