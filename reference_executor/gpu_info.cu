// dip-gpu-info: what the reference executor would run on. Prints the CUDA runtime and driver
// versions, each device (name, compute capability, SMs, memory, peer access) and, when built
// with NCCL, the NCCL version of the header and of the library loaded at run time.
// Exits 0 in every case where it could report something, including "no CUDA device".
#include <cuda_runtime.h>

#include <cstdio>

#ifdef DIP_HAVE_NCCL
#include <nccl.h>
#endif

namespace {

void print_nccl_version() {
#ifdef DIP_HAVE_NCCL
  int code = 0;
  if (ncclGetVersion(&code) == ncclSuccess) {
    // Since NCCL 2.9 the code is major*10000 + minor*100 + patch.
    std::printf("NCCL: %d.%d.%d (library), %d.%d.%d (header)\n", code / 10000, (code % 10000) / 100, code % 100,
                NCCL_MAJOR, NCCL_MINOR, NCCL_PATCH);
  } else {
    std::printf("NCCL: ncclGetVersion failed (header %d.%d.%d)\n", NCCL_MAJOR, NCCL_MINOR, NCCL_PATCH);
  }
#else
  std::printf("NCCL: not built in\n");
#endif
}

void print_versions() {
  int runtime = 0;
  int driver = 0;
  cudaRuntimeGetVersion(&runtime);
  cudaDriverGetVersion(&driver);  // 0 when no driver is installed
  std::printf("CUDA runtime %d.%d, driver supports %d.%d\n", runtime / 1000, (runtime % 1000) / 10, driver / 1000,
              (driver % 1000) / 10);
}

}  // namespace

int main() {
  print_versions();
  print_nccl_version();

  int count = 0;
  const cudaError_t status = cudaGetDeviceCount(&count);
  if (status != cudaSuccess || count == 0) {
    std::printf("no CUDA device (%s)\n", status != cudaSuccess ? cudaGetErrorString(status) : "device count is 0");
    return 0;
  }

  std::printf("%d CUDA device(s)\n", count);
  for (int device = 0; device < count; ++device) {
    cudaDeviceProp prop{};
    if (cudaGetDeviceProperties(&prop, device) != cudaSuccess) {
      std::printf("  [%d] properties unavailable\n", device);
      continue;
    }
    std::size_t free_bytes = 0;
    std::size_t total_bytes = prop.totalGlobalMem;
    if (cudaSetDevice(device) == cudaSuccess) {
      cudaMemGetInfo(&free_bytes, &total_bytes);
    }
    constexpr double gib = 1024.0 * 1024.0 * 1024.0;
    std::printf("  [%d] %s: compute capability %d.%d, %d SMs, %.1f GiB (%.1f GiB free), "
                "PCI %04x:%02x:%02x\n",
                device, prop.name, prop.major, prop.minor, prop.multiProcessorCount,
                static_cast<double>(total_bytes) / gib, static_cast<double>(free_bytes) / gib, prop.pciDomainID,
                prop.pciBusID, prop.pciDeviceID);
  }

  // Peer access decides whether pipeline stages on two GPUs can copy directly.
  if (count > 1) {
    std::printf("peer access (row can access column):\n");
    for (int from = 0; from < count; ++from) {
      std::printf("  [%d]", from);
      for (int to = 0; to < count; ++to) {
        int can = 0;
        if (from != to) {
          cudaDeviceCanAccessPeer(&can, from, to);
        }
        std::printf(" %s", from == to ? "-" : (can != 0 ? "y" : "n"));
      }
      std::printf("\n");
    }
  }
  return 0;
}
