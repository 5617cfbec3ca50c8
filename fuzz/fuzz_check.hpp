// What every fuzz target may conclude about an input: a property that must hold whatever the
// bytes were. A broken one stops the run at once (__builtin_trap), so libFuzzer keeps the input
// as a crash file and the message says which property failed.
#pragma once

#include <cstdio>

namespace dip::fuzz {

// Stops the run when `holds` is false; `what` names the property in the crash report.
inline void check(bool holds, const char* what) {
  if (holds) return;
  std::fprintf(stderr, "dip fuzz: property violated: %s\n", what);
  __builtin_trap();
}

}  // namespace dip::fuzz
