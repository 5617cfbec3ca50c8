// dip::exec::cuda::execute_cuda_mpi: the nccl mode with one process per GPU under MPI (built
// only when CMake found MPI's C bindings and NCCL: DIP_HAVE_MPI).
//
// Every process of the communicator is one pipeline rank (MPI rank = pipeline rank) and calls
// execute_cuda_mpi with the same plan, model and batch (plan deterministically: same batch,
// same seed). The launch:
// 1. placement: the node-local rank (MPI_Comm_split_type MPI_COMM_TYPE_SHARED) modulo the
//    devices this process sees picks its GPU;
// 2. MPI rank 0 makes the ncclUniqueId and MPI_Bcast's it; each process makes its
//    non-blocking communicator (ncclCommInitRankConfig, blocking = 0) and runs run_rank for
//    its own rank only, with nccl_transport;
// 3. each process's rank_report (gradients, losses, peaks, time) is flattened into doubles and
//    gathered to MPI rank 0 (MPI_Gatherv), which builds the step_result with combine_reports.
// A failure on any process after the arguments were checked (no device, NCCL init, the walk,
// a timeout) aborts its communicator, prints the error naming the MPI rank, host and GPU on
// stderr and calls MPI_Abort(comm, 1), so mpirun ends every process and never hangs.
//
// Gradients travel reduced per rank ({module, layer} -> sums over the rank's (microbatch,
// unit) parts in canonical order). A layer lives on one pipeline rank, so rank 0's reduction
// gives the same bits as the threaded nccl mode; were a layer's parts on several ranks, the
// per-rank sums would be added in rank order (equal within rounding).
#pragma once

#include <mpi.h>

#include <memory>
#include <optional>
#include <span>
#include <vector>

#include "cuda_executor.hpp"
#include "dip/exec/executor.hpp"

namespace dip::exec::cuda {

// Where this process runs. Collective over `comm` (it splits it by node).
struct mpi_placement {
  int rank = 0, ranks = 1;              // in `comm`
  int local_rank = 0, local_ranks = 1;  // on this node
  int devices = 0;                      // CUDA devices this process sees
  int device = -1;                      // local_rank % devices; -1 without devices
};
mpi_placement mpi_place(MPI_Comm comm = MPI_COMM_WORLD);

// Runs this process's pipeline rank of plan `p` (comm's size must equal the plan's ranks) and
// returns the step's result on comm's rank 0, nullopt elsewhere. Collective over `comm`.
// options.mode is ignored (always NCCL); options.timeout bounds the communicator's init and
// every receive. Throws dip::error, on every process alike, for arguments that are wrong
// everywhere (no plan, a size mismatch, no NCCL); any other failure ends in MPI_Abort.
std::optional<step_result> execute_cuda_mpi(std::shared_ptr<const plan> p, const multimodal_model& model,
                                            const exported_batch& batch, const cuda_execute_options& options = {},
                                            MPI_Comm comm = MPI_COMM_WORLD);

// A rank_report as doubles and back (what execute_cuda_mpi gathers): peaks, seconds, losses,
// then the rank's reduced gradients. `source` (the sending rank) keeps the parts of different
// ranks apart in the rebuilt gradient_store. Integers are exact (below 2^53).
std::vector<double> flatten_report(const rank_report& report);
rank_report unflatten_report(std::span<const double> data, std::size_t source);

}  // namespace dip::exec::cuda
