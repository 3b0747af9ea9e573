// CPU-only build: NCCL communicators do not exist.
#include "parallel/comm/communicator.h"

namespace ember::parallel {

std::shared_ptr<Communicator> make_nccl_communicator(const std::vector<Device>& devices) {
  EMBER_THROW("Communicator: NCCL communicators over ", devices.size(),
              " CUDA devices need the CUDA backend, but ember was built without CUDA");
}

}  // namespace ember::parallel
