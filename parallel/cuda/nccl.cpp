// NCCL communicator for the GPUs of one process (ncclCommInitAll + grouped collectives).
#include <nccl.h>

#include "parallel/comm/communicator.h"
#include "runtime/cuda/check.h"
#include "runtime/cuda/cuda.h"
#include "runtime/cuda/guard.h"
#include "runtime/cuda/stream.h"

namespace ember::parallel {

namespace {

ncclDataType_t nccl_dtype(const char* op, DType t) {
  switch (t) {
    case DType::Float32: return ncclFloat32;
    case DType::Float64: return ncclFloat64;
    case DType::Float16: return ncclFloat16;
    case DType::BFloat16: return ncclBfloat16;
    case DType::Int64: return ncclInt64;
    case DType::Int32: return ncclInt32;
    case DType::UInt8: return ncclUint8;
    case DType::Bool: break;
  }
  EMBER_THROW(op, ": NCCL collectives do not support dtype ", t);
}

cudaStream_t stream_of(Device d) { return static_cast<cudaStream_t>(cuda::current_stream(d.index()).handle()); }

// Note [NCCL groups]
// One process drives every GPU, so each collective is one ncclGroupStart/End around a call per
// device: NCCL then launches them together instead of deadlocking on the first device's call.
class NcclCommunicator final : public Communicator {
 public:
  explicit NcclCommunicator(std::vector<Device> devices) : Communicator(std::move(devices)) {
    std::vector<int> ids;
    for (const Device& d : this->devices()) {
      cuda::check_device(d, "NCCL communicator");
      ids.push_back(d.index());
    }
    comms_.resize(ids.size());
    EMBER_NCCL_CHECK(ncclCommInitAll(comms_.data(), static_cast<int>(ids.size()), ids.data()));
  }
  ~NcclCommunicator() override {
    for (ncclComm_t c : comms_)
      if (c) ncclCommDestroy(c);
  }

  void all_reduce(const std::vector<Tensor>& tensors) override {
    check_tensors("all_reduce", tensors);
    const ncclDataType_t dt = nccl_dtype("all_reduce", tensors[0].dtype());
    group([&](size_t i) {
      const Tensor& t = tensors[i];
      EMBER_NCCL_CHECK(ncclAllReduce(t.raw_data(), t.raw_data(), static_cast<size_t>(t.numel()), dt, ncclSum,
                                     comms_[i], stream_of(t.device())));
    });
  }
  void broadcast(const std::vector<Tensor>& tensors, int root) override {
    check_tensors("broadcast", tensors);
    const ncclDataType_t dt = nccl_dtype("broadcast", tensors[0].dtype());
    group([&](size_t i) {
      const Tensor& t = tensors[i];
      EMBER_NCCL_CHECK(ncclBroadcast(t.raw_data(), t.raw_data(), static_cast<size_t>(t.numel()), dt, root, comms_[i],
                                     stream_of(t.device())));
    });
  }
  void reduce(const std::vector<Tensor>& tensors, int root) override {
    check_tensors("reduce", tensors);
    const ncclDataType_t dt = nccl_dtype("reduce", tensors[0].dtype());
    group([&](size_t i) {
      const Tensor& t = tensors[i];
      EMBER_NCCL_CHECK(ncclReduce(t.raw_data(), t.raw_data(), static_cast<size_t>(t.numel()), dt, ncclSum, root,
                                  comms_[i], stream_of(t.device())));
    });
  }
  void all_gather(const std::vector<Tensor>& inputs, const std::vector<Tensor>& outputs) override {
    check_tensors("all_gather", inputs);
    check_tensors("all_gather", outputs);
    const ncclDataType_t dt = nccl_dtype("all_gather", inputs[0].dtype());
    for (size_t i = 0; i < outputs.size(); ++i)
      EMBER_CHECK(outputs[i].numel() == inputs[i].numel() * static_cast<int64_t>(size()), "all_gather: output ", i,
                  " holds ", outputs[i].numel(), " elements; expected ", inputs[i].numel() * static_cast<int64_t>(size()));
    group([&](size_t i) {
      EMBER_NCCL_CHECK(ncclAllGather(inputs[i].raw_data(), outputs[i].raw_data(),
                                     static_cast<size_t>(inputs[i].numel()), dt, comms_[i],
                                     stream_of(inputs[i].device())));
    });
  }
  void barrier() override {
    for (const Device& d : devices()) cuda::current_stream(d.index()).synchronize();
  }

 private:
  template <class F>
  void group(F&& per_device) {
    EMBER_NCCL_CHECK(ncclGroupStart());
    try {
      for (size_t i = 0; i < comms_.size(); ++i) {
        DeviceGuard guard(devices()[i]);
        per_device(i);
      }
    } catch (...) {
      ncclGroupEnd();
      throw;
    }
    EMBER_NCCL_CHECK(ncclGroupEnd());
  }

  std::vector<ncclComm_t> comms_;
};

}  // namespace

std::shared_ptr<Communicator> make_nccl_communicator(const std::vector<Device>& devices) {
  return std::make_shared<NcclCommunicator>(devices);
}

}  // namespace ember::parallel
