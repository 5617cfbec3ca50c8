// The MPI launch of the CUDA executor (mpi_launch.hpp).
#include "mpi_launch.hpp"

#include <algorithm>
#include <atomic>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>
#include <thread>
#include <utility>

#include "cuda_compute.hpp"
#include "nccl_transport.hpp"

namespace dip::exec::cuda {

namespace {

// Prints why this process fails and ends the whole job: mpirun must never wait for it.
[[noreturn]] void abort_job(MPI_Comm comm, const mpi_placement& where, const std::string& what) {
  char host[MPI_MAX_PROCESSOR_NAME] = {};
  int length = 0;
  if (MPI_Get_processor_name(host, &length) != MPI_SUCCESS) host[0] = '\0';
  std::fprintf(stderr, "execute_cuda_mpi: MPI rank %d of %d (pipeline rank %d, host %s, GPU %d) failed: %s\n",
               where.rank, where.ranks, where.rank, host, where.device, what.c_str());
  std::fflush(stderr);
  MPI_Abort(comm, 1);
  std::abort();  // MPI_Abort does not return
}

std::string current_message() {
  try {
    throw;
  } catch (const std::exception& e) {
    return e.what();
  } catch (...) {
    return "unknown exception";
  }
}

void mpi_check(int status, MPI_Comm comm, const mpi_placement& where, const char* what) {
  if (status == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING] = {};
  int length = 0;
  MPI_Error_string(status, text, &length);
  abort_job(comm, where, std::string(what) + ": " + text);
}

class reader {
 public:
  explicit reader(std::span<const double> data) : data_(data) {}
  double next() {
    require(at_ < data_.size(), errc::invalid_argument, "unflatten_report", "report truncated");
    return data_[at_++];
  }
  std::size_t count() {
    const double v = next();
    require(v >= 0 && v < 9007199254740992.0, errc::invalid_argument, "unflatten_report", "bad count");
    return std::size_t(v);
  }
  std::span<const double> take(std::size_t n) {
    require(n <= data_.size() - at_, errc::invalid_argument, "unflatten_report", "report truncated");
    const auto s = data_.subspan(at_, n);
    at_ += n;
    return s;
  }
  bool done() const noexcept { return at_ == data_.size(); }

 private:
  std::span<const double> data_;
  std::size_t at_ = 0;
};

}  // namespace

std::vector<double> flatten_report(const rank_report& report) {
  std::vector<double> out{double(report.peak_activation_bytes), double(report.peak_offloaded_bytes), report.seconds,
                          double(report.losses.size())};
  for (const auto& [key, value] : report.losses) {
    out.insert(out.end(), {double(std::get<0>(key)), double(std::get<1>(key)), double(std::get<2>(key)), value});
  }
  const auto gradients = report.gradients.reduce();
  out.push_back(double(gradients.size()));
  for (const auto& [key, tensors] : gradients) {
    out.insert(out.end(), {double(key.first), double(key.second), double(tensors.size())});
    for (const tensor& t : tensors) {
      out.insert(out.end(), {double(t.rows()), double(t.cols())});
      out.insert(out.end(), t.data(), t.data() + t.size());
    }
  }
  return out;
}

rank_report unflatten_report(std::span<const double> data, std::size_t source) {
  reader in(data);
  rank_report report;
  report.peak_activation_bytes = in.count();
  report.peak_offloaded_bytes = in.count();
  report.seconds = in.next();
  for (std::size_t n = in.count(), i = 0; i < n; ++i) {
    const std::size_t j = in.count();
    const auto module = std::uint32_t(in.count()), unit = std::uint32_t(in.count());
    report.losses[{j, module, unit}] = in.next();
  }
  for (std::size_t n = in.count(), i = 0; i < n; ++i) {
    const std::size_t module = in.count(), layer = in.count(), count = in.count();
    std::vector<tensor> tensors;
    for (std::size_t k = 0; k < count; ++k) {
      const std::size_t rows = in.count(), cols = in.count();
      const std::span<const double> values = in.take(rows * cols);
      tensor t(static_cast<Eigen::Index>(rows), static_cast<Eigen::Index>(cols));
      std::copy(values.begin(), values.end(), t.data());
      tensors.push_back(std::move(t));
    }
    report.gradients.add(module, layer, source, 0, std::move(tensors));
  }
  require(in.done(), errc::invalid_argument, "unflatten_report", "trailing data");
  return report;
}

mpi_placement mpi_place(MPI_Comm comm) {
  mpi_placement where;
  MPI_Comm_rank(comm, &where.rank);
  MPI_Comm_size(comm, &where.ranks);
  MPI_Comm node = MPI_COMM_NULL;
  if (MPI_Comm_split_type(comm, MPI_COMM_TYPE_SHARED, where.rank, MPI_INFO_NULL, &node) == MPI_SUCCESS) {
    MPI_Comm_rank(node, &where.local_rank);
    MPI_Comm_size(node, &where.local_ranks);
    MPI_Comm_free(&node);
  }
  where.devices = device_count();
  where.device = where.devices > 0 ? where.local_rank % where.devices : -1;
  return where;
}

std::optional<step_result> execute_cuda_mpi(std::shared_ptr<const plan> p, const multimodal_model& model,
                                            const exported_batch& batch, const cuda_execute_options& options,
                                            MPI_Comm comm) {
  // Arguments every process sees alike: a dip::error on each, no abort.
  require(p != nullptr && p->graph != nullptr, errc::invalid_argument, "execute_cuda_mpi", "no plan");
  require(have_nccl(), errc::invalid_argument, "execute_cuda_mpi", "this build has no NCCL");
  int size = 0;
  MPI_Comm_size(comm, &size);
  const std::size_t ranks = p->ranks.size();
  require(std::size_t(size) == ranks, errc::invalid_argument, "execute_cuda_mpi",
          "the plan has " + std::to_string(ranks) + " ranks and the MPI communicator " + std::to_string(size) +
              " processes (run with -np " + std::to_string(ranks) + ")");

  // From here on a failure on one process ends the job.
  const mpi_placement where = mpi_place(comm);
  if (where.devices == 0) abort_job(comm, where, "no CUDA device");

  ncclUniqueId id{};
  if (where.rank == 0) {
    const ncclResult_t r = ncclGetUniqueId(&id);
    if (r != ncclSuccess) abort_job(comm, where, std::string("ncclGetUniqueId failed: ") + ncclGetErrorString(r));
  }
  mpi_check(MPI_Bcast(&id, int(sizeof id), MPI_BYTE, 0, comm), comm, where, "MPI_Bcast of the ncclUniqueId");

  rank_report report;
  {
    std::unique_ptr<device_context> dc;
    std::unique_ptr<execution_context> ctx;
    try {
      dc = std::make_unique<device_context>(where.device);  // sets the device
      ctx = std::make_unique<execution_context>(p, std::make_shared<const executable_model>(model), batch);
    } catch (...) {
      abort_job(comm, where, current_message());
    }
    ncclComm_t nccl = nullptr;
    try {
      nccl = init_nccl_rank(id, int(ranks), where.rank, options.timeout);  // aborts its communicator on failure
    } catch (...) {
      abort_job(comm, where, current_message());
    }
    const execute_options walk{.timeout = options.timeout, .before_action = options.before_action};
    const rank_id rank = rank_id::from_index(std::size_t(where.rank));
    auto failed = std::make_shared<std::atomic<bool>>(false);
    {
      nccl_transport transport(nccl, where.rank, *dc, options.timeout, failed);
      try {
        stage_runner<cuda_compute> runner(*ctx, rank, cuda_compute(*ctx->model, ctx->batch, *dc));
        report = run_rank(*ctx, rank, runner, transport, walk);
      } catch (...) {
        const std::string message = current_message();
        transport.abort();  // ncclCommAbort
        abort_job(comm, where, message);
      }
    }
    ncclResult_t state = ncclCommFinalize(nccl);
    while (state == ncclInProgress) {
      std::this_thread::yield();
      if (ncclCommGetAsyncError(nccl, &state) != ncclSuccess) break;
    }
    (void)ncclCommDestroy(nccl);
  }  // the device context goes after every device tensor

  // Gather the reports on rank 0.
  std::vector<double> mine;
  try {
    mine = flatten_report(report);
  } catch (...) {
    abort_job(comm, where, current_message());
  }
  if (mine.size() > std::size_t(INT_MAX)) abort_job(comm, where, "report too large for MPI_Gatherv");
  const int count = int(mine.size());
  std::vector<int> counts(where.rank == 0 ? ranks : 0), offsets;
  mpi_check(MPI_Gather(&count, 1, MPI_INT, counts.data(), 1, MPI_INT, 0, comm), comm, where,
            "MPI_Gather of report sizes");
  std::vector<double> all;
  if (where.rank == 0) {
    std::size_t total = 0;
    for (const int c : counts) {
      offsets.push_back(int(total));
      total += std::size_t(c);
    }
    if (total > std::size_t(INT_MAX)) abort_job(comm, where, "reports too large for MPI_Gatherv");
    all.resize(total);
  }
  mpi_check(MPI_Gatherv(mine.data(), count, MPI_DOUBLE, all.data(), counts.data(), offsets.data(), MPI_DOUBLE, 0, comm),
            comm, where, "MPI_Gatherv of the reports");
  if (where.rank != 0) return std::nullopt;
  try {
    std::vector<rank_report> reports;
    for (std::size_t r = 0; r < ranks; ++r) {
      reports.push_back(
          unflatten_report(std::span<const double>(all).subspan(std::size_t(offsets[r]), std::size_t(counts[r])), r));
    }
    return combine_reports(std::move(reports));
  } catch (...) {
    abort_job(comm, where, current_message());
  }
}

}  // namespace dip::exec::cuda
