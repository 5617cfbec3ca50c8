#!/usr/bin/env bash
# Formats dip's tracked C++ files (*.hpp *.cpp *.cu *.cuh *.h) with the repository's .clang-format.
#
#   scripts/format.sh           reformat them in place
#   scripts/format.sh --check   change nothing; list every file that is not formatted and exit 1
#                               (exit 0 when all are)
#
# clang-format is found as clang-format, else clang-format-14 .. clang-format-19; CLANG_FORMAT=path
# picks one. Versions format a few constructs differently: the style was tuned on clang-format 14.
# Exits 77 (ctest's skip code) when none is installed, 2 on a usage error or a clang-format failure.
set -euo pipefail

usage() { sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; }

check=0
case "${1:-}" in
  "") ;;
  --check) check=1 ;;
  -h | --help) usage; exit 0 ;;
  *) usage >&2; exit 2 ;;
esac
[ $# -le 1 ] || { usage >&2; exit 2; }

cd "$(dirname "${BASH_SOURCE[0]}")/.."

clang_format=""
if [ -n "${CLANG_FORMAT:-}" ]; then
  candidates=("$CLANG_FORMAT")
else
  candidates=(clang-format clang-format-{14..19})
fi
for candidate in "${candidates[@]}"; do
  if command -v "$candidate" >/dev/null 2>&1; then
    clang_format=$(command -v "$candidate")
    break
  fi
done
if [ -z "$clang_format" ]; then
  echo "format: clang-format not found (tried ${candidates[*]});" \
       "install it (Debian: apt-get install clang-format) or set CLANG_FORMAT; skipping" >&2
  exit 77
fi

# The tracked files that exist (a file deleted but not yet staged is skipped); outside a git checkout,
# the C++ files under the source folders.
files=()
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  while IFS= read -r -d '' f; do
    [ -f "$f" ] && files+=("$f")
  done < <(git ls-files -z -- '*.hpp' '*.cpp' '*.cu' '*.cuh' '*.h')
else
  while IFS= read -r -d '' f; do
    files+=("$f")
  done < <(find include reference_executor tools tests examples bench fuzz python/src -type f \
             \( -name '*.hpp' -o -name '*.cpp' -o -name '*.cu' -o -name '*.cuh' -o -name '*.h' \) \
             -print0 2>/dev/null | sort -z)
fi
if [ ${#files[@]} -eq 0 ]; then
  echo "format: no C++ files found" >&2
  exit 2
fi

if [ $check -eq 0 ]; then
  "$clang_format" --style=file -i -- "${files[@]}"
  echo "format: formatted ${#files[@]} files with $("$clang_format" --version)"
  exit 0
fi

formatted=$(mktemp)
trap 'rm -f "$formatted"' EXIT
unformatted=0
for f in "${files[@]}"; do
  if ! "$clang_format" --style=file -- "$f" >"$formatted"; then
    echo "format: $clang_format failed on $f" >&2
    exit 2
  fi
  if ! cmp -s "$f" "$formatted"; then
    lines=$(diff -- "$f" "$formatted" | grep -c '^[<>]' || true)
    echo "$f: not formatted ($lines lines differ)"
    unformatted=$((unformatted + 1))
  fi
done
if [ $unformatted -gt 0 ]; then
  echo "format: $unformatted of ${#files[@]} files are not formatted ($("$clang_format" --version));" \
       "run scripts/format.sh to fix them" >&2
  exit 1
fi
echo "format: all ${#files[@]} files are formatted"
