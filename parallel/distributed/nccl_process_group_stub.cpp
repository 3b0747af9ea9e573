// CPU-only build: process groups have no NCCL backend, so collectives on CUDA tensors throw.
#include "parallel/distributed/detail.h"

namespace ember::distributed::detail {

std::shared_ptr<NcclBackend> make_nccl_backend(const std::shared_ptr<GroupImpl>& group) {
  EMBER_THROW("ProcessGroup (rank ", group->config().rank, " of ", group->config().size,
              "): collectives on CUDA tensors use NCCL, but ember was built without CUDA (EMBER_CUDA=OFF)");
}

}  // namespace ember::distributed::detail
