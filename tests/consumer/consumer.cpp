// A trainer-like consumer: dip's umbrella header must compile in a project that asks for no
// language standard of its own; linking dip::dip is what brings in C++20.
#include <dip/dip.hpp>

static_assert(__cplusplus >= 202002L, "dip::dip must give its consumers C++20");

int main() { return 0; }
