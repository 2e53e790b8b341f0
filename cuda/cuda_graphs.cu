// The CUDA backend: graphs (capture and replay).
//
// Graphs. beginCapture = cudaStreamBeginCapture in relaxed mode (so the allocator may still
//   cudaMalloc); streams join through event waits, as CUDA defines. The Graph holds every
//   tensor a captured op used (keepAlive, from ops.cpp), so disposing of one in JavaScript
//   while the graph lives cannot free memory it writes. While a capture is open the
//   allocator does not fence (a fence's event records would become graph nodes): blocks
//   released then wait for the end of the capture, and those that were handed out during it
//   (ops' scratch, used by graph nodes through raw pointers) go to the Graph, which owns them
//   until it is destroyed. A stream released while it is part of the capture (it can be
//   neither synchronised nor destroyed then) is destroyed after endCapture. A Graph released
//   on a callback thread is destroyed by the next entry point. Label checks need host
//   functions, which a capture cannot hold: captured ops skip the report (the kernels still
//   never read out of range). Host waits on a capturing stream throw.
// Part of the CUDA backend (cuda_backend.cu has the overview). Host code: the host emulation
// (test/cuda/host_emulation/run.sh) compiles it with g++ on a fake CUDA runtime.
#include "cuda_backend_impl.cuh"

namespace sg::cuda::runtime {
namespace {

// An instantiated CUDA graph and the device blocks its nodes use.
class CudaGraph final : public Graph {
 public:
  CudaGraph(int index, cudaGraph_t graph, cudaGraphExec_t exec, DeviceAllocator& allocator,
            std::vector<DeviceAllocator::Block> blocks, std::vector<std::shared_ptr<Storage>> kept)
      : index_(index), graph_(graph), exec_(exec), allocator_(allocator), blocks_(std::move(blocks)),
        kept_(std::move(kept)) {
    CUDA_CHECK(cudaEventCreateWithFlags(&lastLaunch_, cudaEventDisableTiming));
  }

  ~CudaGraph() override {
    // Waits for the last launch (destruction is rare: the end of a fit), then frees; from a
    // callback thread (no CUDA calls there) all of it is deferred to the next entry point.
    auto destroy = [index = index_, graph = graph_, exec = exec_, lastLaunch = lastLaunch_,
                    launched = launched_, allocator = &allocator_, blocks = std::move(blocks_),
                    kept = std::move(kept_)]() mutable {
      (void)cudaSetDevice(index);
      if (launched) (void)cudaEventSynchronize(lastLaunch);
      (void)cudaEventDestroy(lastLaunch);
      (void)cudaGraphExecDestroy(exec);
      (void)cudaGraphDestroy(graph);
      (void)cudaGetLastError();
      allocator->releaseAll(blocks);
      kept.clear();  // their blocks retire as usual: reused after the next fence
    };
    runOrDefer(std::move(destroy));
  }

  void launch(Stream& stream) override {
    CudaEvent::checkNotInCallback();
    CUDA_CHECK(cudaSetDevice(index_));
    const cudaStream_t s = static_cast<CudaStream&>(stream).raw();
    CUDA_CHECK(cudaGraphLaunch(exec_, s));
    CUDA_CHECK(cudaEventRecord(lastLaunch_, s));
    launched_ = true;
  }

 private:
  const int index_;
  cudaGraph_t graph_;
  cudaGraphExec_t exec_;
  DeviceAllocator& allocator_;
  std::vector<DeviceAllocator::Block> blocks_;      // released during the capture
  std::vector<std::shared_ptr<Storage>> kept_;     // every tensor a captured op used
  cudaEvent_t lastLaunch_ = nullptr;
  bool launched_ = false;
};

}  // namespace

void CudaBackend::beginCapture(Stream& origin) {
  enter();
  const cudaStream_t s = rawStream(origin);
  {
    std::lock_guard<std::mutex> lock(registry_.m);
    if (registry_.captureOrigin)
      throw std::runtime_error("beginCapture: another capture is in progress on " +
                               device().name());
    registry_.captureOrigin = s;
  }
  allocator_.beginCapture();
  const cudaError_t e = cudaStreamBeginCapture(s, cudaStreamCaptureModeRelaxed);
  if (e != cudaSuccess) {
    allocator_.releaseAll(allocator_.endCapture());
    std::lock_guard<std::mutex> lock(registry_.m);
    registry_.captureOrigin = nullptr;
  }
  CUDA_CHECK(e);
}

void CudaBackend::keepAlive(Stream&, const std::shared_ptr<Storage>& storage) {
  captureKept_.push_back(storage);  // the JavaScript thread only, like every op call
}

std::unique_ptr<Graph> CudaBackend::endCapture(Stream& origin) {
  enter();
  const cudaStream_t s = rawStream(origin);
  {
    std::lock_guard<std::mutex> lock(registry_.m);
    if (registry_.captureOrigin != s)
      throw std::runtime_error("endCapture: no capture was begun on this stream");
    registry_.captureOrigin = nullptr;
  }
  std::vector<std::shared_ptr<Storage>> kept;
  kept.swap(captureKept_);
  std::vector<DeviceAllocator::Block> blocks = allocator_.endCapture();
  cudaGraph_t graph = nullptr;
  cudaError_t e = cudaStreamEndCapture(s, &graph);  // fails if a joined stream never rejoined
  std::vector<std::function<void()>> afterCapture;
  {
    std::lock_guard<std::mutex> lock(registry_.m);
    afterCapture.swap(registry_.afterCapture);
  }
  for (auto& destroy : afterCapture) destroy();  // streams released during the capture
  cudaGraphExec_t exec = nullptr;
  if (e == cudaSuccess) {
    e = cudaGraphInstantiate(&exec, graph, 0);
    if (e != cudaSuccess) (void)cudaGraphDestroy(graph);
  }
  if (e != cudaSuccess) {
    allocator_.releaseAll(blocks);  // nothing captured will run
    CUDA_CHECK(e);
  }
  try {
    return std::make_unique<CudaGraph>(index_, graph, exec, allocator_, std::move(blocks),
                                       std::move(kept));
  } catch (...) {
    (void)cudaGraphExecDestroy(exec);
    (void)cudaGraphDestroy(graph);
    throw;
  }
}

}  // namespace sg::cuda::runtime
