#!/usr/bin/env bash
# Installs the Debian 12 packages dip needs to build and test, and only those that are missing.
# Needs root when something is missing; otherwise prints the apt-get command and fails.
# CUDA and NCCL are optional and not installed here (NVIDIA's own packages provide them).
# Open MPI is optional too (only the CUDA executor's one-process-per-GPU launch uses it) but
# installed, so that CI builds and checks that launch. torch is not a Debian package here:
# scripts/test.sh pip-installs it into a virtual environment (python3-venv).
set -euo pipefail

packages=(cmake g++ libboost-dev libeigen3-dev doctest-dev nlohmann-json3-dev libcli11-dev
          libbenchmark-dev python3 python3-matplotlib libopenmpi-dev openmpi-bin
          python3-dev python3-venv pybind11-dev python3-pytest clang libclang-rt-14-dev doxygen
          pkg-config coinor-libcbc-dev clang-format clang-tidy)

if ! command -v dpkg >/dev/null 2>&1; then
  echo "dip: no dpkg here (not Debian?); make sure these are installed: ${packages[*]} make" >&2
  exit 0
fi

installed() {
  dpkg -s "$1" 2>/dev/null | grep -q '^Status: install ok installed'
}

missing=()
for package in "${packages[@]}"; do
  installed "$package" || missing+=("$package")
done
# Either build tool will do.
if ! installed make && ! installed ninja-build; then
  missing+=(make)
fi

if [ ${#missing[@]} -eq 0 ]; then
  echo "dip: all build dependencies are installed"
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "dip: missing packages: ${missing[*]}" >&2
  echo "dip: run as root: apt-get update && apt-get install -y --no-install-recommends ${missing[*]}" >&2
  exit 1
fi

echo "dip: installing missing packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends "${missing[@]}"
