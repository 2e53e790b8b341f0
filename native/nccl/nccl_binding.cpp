// synthgrad_nccl.node: the NCCL transport of a decoupled network's modules on several GPUs
// (docs/distributed-scaling.md). It enqueues ncclSend/ncclRecv of device buffers on a CUDA
// stream and nothing else; ts/distributed/nccl.ts exchanges the communicator's unique id over
// MPI and checks the tensors.
//
// NCCL is loaded at run time (dlopen of libnccl.so.2, dlsym of the few functions used), and
// the CUDA driver (libcuda.so.1) likewise, for the one call that makes a device current: the
// addon builds without NCCL's or CUDA's headers and loads on a machine without either, where
// load() says what is missing. The types and constants below are those of NCCL's documented
// C API (nccl.h), declared here.
#include <dlfcn.h>
#include <napi.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

namespace {

using ncclResult_t = int;  // ncclSuccess = 0; the others are errors (ncclInProgress = 7 included: only non-blocking comms return it)
constexpr ncclResult_t ncclSuccess = 0;
constexpr size_t kUniqueIdBytes = 128;  // NCCL_UNIQUE_ID_BYTES
struct ncclUniqueId {
  char internal[kUniqueIdBytes];
};
struct ncclComm;
using ncclComm_t = ncclComm*;
using ncclDataType_t = int;
constexpr ncclDataType_t ncclUint8 = 1;  // bytes: ncclInt8 = 0, ncclUint8 = 1
using cudaStream_t = void*;              // a pointer (struct CUstream_st*) in the C ABI

// The CUDA driver API (cuda.h), for making a device's primary context current.
using CUresult = int;
using CUdevice = int;
using CUcontext = void*;

struct Library {
  void* handle = nullptr;
  std::string path;
  int version = 0;
  ncclResult_t (*getVersion)(int*) = nullptr;
  ncclResult_t (*getUniqueId)(ncclUniqueId*) = nullptr;
  ncclResult_t (*commInitRank)(ncclComm_t*, int, ncclUniqueId, int) = nullptr;
  ncclResult_t (*commDestroy)(ncclComm_t) = nullptr;
  ncclResult_t (*commAbort)(ncclComm_t) = nullptr;
  ncclResult_t (*commGetAsyncError)(ncclComm_t, ncclResult_t*) = nullptr;
  ncclResult_t (*send)(const void*, size_t, ncclDataType_t, int, ncclComm_t, cudaStream_t) = nullptr;
  ncclResult_t (*recv)(void*, size_t, ncclDataType_t, int, ncclComm_t, cudaStream_t) = nullptr;
  const char* (*getErrorString)(ncclResult_t) = nullptr;
  ncclResult_t (*groupStart)() = nullptr;
  ncclResult_t (*groupEnd)() = nullptr;
};
Library nccl;

struct Driver {
  void* handle = nullptr;
  CUresult (*init)(unsigned) = nullptr;
  CUresult (*deviceGet)(CUdevice*, int) = nullptr;
  CUresult (*primaryCtxRetain)(CUcontext*, CUdevice) = nullptr;
  CUresult (*ctxSetCurrent)(CUcontext) = nullptr;
};
Driver driver;

struct Comm {
  ncclComm_t comm = nullptr;
  int ranks = 0;
  int rank = 0;
  int device = 0;
};
std::vector<Comm> comms;  // a communicator's handle is its index; destroyed ones keep their slot (comm = nullptr)

std::string ncclError(ncclResult_t r) {
  const char* s = nccl.getErrorString ? nccl.getErrorString(r) : nullptr;
  return std::string(s ? s : "unknown NCCL error") + " (ncclResult_t " + std::to_string(r) + ")";
}

template <typename F>
bool bind(void* handle, const char* name, F& fn, std::string& missing) {
  fn = reinterpret_cast<F>(dlsym(handle, name));
  if (!fn) missing += (missing.empty() ? "" : ", ") + std::string(name);
  return fn != nullptr;
}

// Makes `device`'s primary context current on this thread (what cudaSetDevice does), through
// the driver, loaded on first use. Returns an error message, empty on success.
std::string makeCurrent(int device) {
  if (!driver.handle) {
    void* h = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!h) return std::string("the CUDA driver (libcuda.so.1) is not loadable: ") + dlerror();
    std::string missing;
    bind(h, "cuInit", driver.init, missing);
    bind(h, "cuDeviceGet", driver.deviceGet, missing);
    bind(h, "cuDevicePrimaryCtxRetain", driver.primaryCtxRetain, missing);
    bind(h, "cuCtxSetCurrent", driver.ctxSetCurrent, missing);
    if (!missing.empty()) {
      dlclose(h);
      return "libcuda.so.1 lacks " + missing;
    }
    driver.handle = h;
  }
  CUdevice dev = 0;
  CUcontext ctx = nullptr;
  CUresult r = driver.init(0);
  if (r == 0) r = driver.deviceGet(&dev, device);
  if (r == 0) r = driver.primaryCtxRetain(&ctx, dev);
  if (r == 0) r = driver.ctxSetCurrent(ctx);
  if (r != 0) return "cannot make cuda:" + std::to_string(device) + " current (CUresult " + std::to_string(r) + ")";
  return "";
}

void requireLoaded(Napi::Env env, const char* fn) {
  if (!nccl.handle) throw Napi::Error::New(env, std::string("nccl.") + fn + ": NCCL is not loaded (call load() first)");
}

int intArg(const Napi::CallbackInfo& info, size_t i, const char* fn, const char* name, int lo, int hi) {
  if (info.Length() <= i || !info[i].IsNumber())
    throw Napi::TypeError::New(info.Env(), std::string("nccl.") + fn + ": '" + name + "' must be an integer");
  double v = info[i].As<Napi::Number>().DoubleValue();
  if (!(v >= lo && v <= hi) || v != static_cast<double>(static_cast<long long>(v)))
    throw Napi::RangeError::New(info.Env(), std::string("nccl.") + fn + ": '" + name + "' must be an integer in [" + std::to_string(lo) +
                                                ", " + std::to_string(hi) + "], got " + info[i].ToString().Utf8Value());
  return static_cast<int>(v);
}

// A device address or a stream, as a BigInt (pointers do not fit a double).
uint64_t handleArg(const Napi::CallbackInfo& info, size_t i, const char* fn, const char* name, bool allowZero) {
  if (info.Length() <= i || !info[i].IsBigInt())
    throw Napi::TypeError::New(info.Env(), std::string("nccl.") + fn + ": '" + name + "' must be a BigInt (a device address or stream)");
  bool lossless = false;
  uint64_t v = info[i].As<Napi::BigInt>().Uint64Value(&lossless);
  if (!lossless || (v == 0 && !allowZero))
    throw Napi::RangeError::New(info.Env(), std::string("nccl.") + fn + ": '" + name + "' must be a non-zero 64-bit address, got " +
                                                info[i].ToString().Utf8Value());
  return v;
}

Comm& commArg(const Napi::CallbackInfo& info, const char* fn) {
  int id = intArg(info, 0, fn, "comm", 0, 1 << 30);
  if (static_cast<size_t>(id) >= comms.size() || comms[id].comm == nullptr)
    throw Napi::RangeError::New(info.Env(), std::string("nccl.") + fn + ": 'comm' " + std::to_string(id) + " is not an open communicator");
  return comms[id];
}

// load(path): dlopen NCCL; { version, path }. Loads once per process.
Napi::Value Load(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) throw Napi::TypeError::New(env, "nccl.load: 'path' must be a string (e.g. 'libnccl.so.2')");
  std::string path = info[0].As<Napi::String>().Utf8Value();
  if (!nccl.handle) {
    void* h = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!h) throw Napi::Error::New(env, "nccl.load: " + path + " not found or not loadable (" + dlerror() + ")");
    Library lib;
    std::string missing;
    bind(h, "ncclGetVersion", lib.getVersion, missing);
    bind(h, "ncclGetUniqueId", lib.getUniqueId, missing);
    bind(h, "ncclCommInitRank", lib.commInitRank, missing);
    bind(h, "ncclCommDestroy", lib.commDestroy, missing);
    bind(h, "ncclCommAbort", lib.commAbort, missing);
    bind(h, "ncclCommGetAsyncError", lib.commGetAsyncError, missing);
    bind(h, "ncclSend", lib.send, missing);
    bind(h, "ncclRecv", lib.recv, missing);
    bind(h, "ncclGetErrorString", lib.getErrorString, missing);
    bind(h, "ncclGroupStart", lib.groupStart, missing);
    bind(h, "ncclGroupEnd", lib.groupEnd, missing);
    if (!missing.empty()) {
      dlclose(h);
      throw Napi::Error::New(env, "nccl.load: " + path + " is not NCCL 2.7 or later (no " + missing + ")");
    }
    int version = 0;
    ncclResult_t r = lib.getVersion(&version);
    if (r != ncclSuccess) {
      dlclose(h);
      throw Napi::Error::New(env, "nccl.load: ncclGetVersion failed: " + std::to_string(r));
    }
    lib.handle = h;
    lib.path = path;
    lib.version = version;
    nccl = lib;
  } else if (path != nccl.path) {
    throw Napi::Error::New(env, "nccl.load: NCCL is already loaded from " + nccl.path + " in this process, not " + path);
  }
  Napi::Object out = Napi::Object::New(env);
  out.Set("version", nccl.version);
  out.Set("path", nccl.path);
  return out;
}

// uniqueId(): the 128 bytes that rank 0 hands every rank (over MPI) before initRank.
Napi::Value UniqueId(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  requireLoaded(env, "uniqueId");
  ncclUniqueId id;
  ncclResult_t r = nccl.getUniqueId(&id);
  if (r != ncclSuccess) throw Napi::Error::New(env, "nccl.uniqueId: ncclGetUniqueId failed: " + ncclError(r));
  Napi::Uint8Array out = Napi::Uint8Array::New(env, kUniqueIdBytes);
  std::memcpy(out.Data(), id.internal, kUniqueIdBytes);
  return out;
}

// ncclCommInitRank blocks until every rank joined: it runs on a worker thread, so the event loop
// (and the MPI progress thread's Promises) keep running meanwhile.
class InitWorker : public Napi::AsyncWorker {
 public:
  InitWorker(Napi::Env env, const ncclUniqueId& id, int ranks, int rank, int device)
      : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), id_(id), ranks_(ranks), rank_(rank), device_(device) {}
  Napi::Promise promise() { return deferred_.Promise(); }

 protected:
  void Execute() override {
    std::string e = makeCurrent(device_);
    if (!e.empty()) return SetError("nccl.initRank: " + e);
    ncclResult_t r = nccl.commInitRank(&comm_, ranks_, id_, rank_);
    if (r != ncclSuccess) SetError("nccl.initRank: ncclCommInitRank (rank " + std::to_string(rank_) + " of " + std::to_string(ranks_) + ") failed: " + ncclError(r));
  }
  void OnOK() override {
    Napi::Env env = Env();
    // The JavaScript thread enqueues the sends and receives: the device must be current there too.
    std::string e = makeCurrent(device_);
    if (!e.empty()) {
      nccl.commAbort(comm_);
      deferred_.Reject(Napi::Error::New(env, "nccl.initRank: " + e).Value());
      return;
    }
    comms.push_back(Comm{comm_, ranks_, rank_, device_});
    deferred_.Resolve(Napi::Number::New(env, static_cast<double>(comms.size() - 1)));
  }
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  ncclUniqueId id_;
  int ranks_, rank_, device_;
  ncclComm_t comm_ = nullptr;
};

// initRank(id, ranks, rank, device): a Promise of the communicator's handle.
Napi::Value InitRank(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  requireLoaded(env, "initRank");
  if (info.Length() < 1 || !info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array ||
      info[0].As<Napi::Uint8Array>().ElementLength() != kUniqueIdBytes)
    throw Napi::TypeError::New(env, "nccl.initRank: 'id' must be the 128-byte Uint8Array of uniqueId()");
  int ranks = intArg(info, 1, "initRank", "ranks", 1, 1 << 20);
  int rank = intArg(info, 2, "initRank", "rank", 0, ranks - 1);
  int device = intArg(info, 3, "initRank", "device", 0, 1023);
  ncclUniqueId id;
  std::memcpy(id.internal, info[0].As<Napi::Uint8Array>().Data(), kUniqueIdBytes);
  auto* w = new InitWorker(env, id, ranks, rank, device);
  Napi::Promise p = w->promise();
  w->Queue();
  return p;
}

// send(comm, pointer, bytes, peer, stream) / recv(...): enqueued on `stream`; they return at once.
Napi::Value Transfer(const Napi::CallbackInfo& info, bool receive) {
  const char* fn = receive ? "recv" : "send";
  Napi::Env env = info.Env();
  requireLoaded(env, fn);
  Comm& c = commArg(info, fn);
  uint64_t pointer = handleArg(info, 1, fn, "pointer", false);
  if (info.Length() <= 2 || !info[2].IsNumber()) throw Napi::TypeError::New(env, std::string("nccl.") + fn + ": 'bytes' must be an integer");
  double bytes = info[2].As<Napi::Number>().DoubleValue();
  if (!(bytes >= 1 && bytes <= 9007199254740991.0) || bytes != static_cast<double>(static_cast<int64_t>(bytes)))
    throw Napi::RangeError::New(env, std::string("nccl.") + fn + ": 'bytes' must be a positive integer, got " + info[2].ToString().Utf8Value());
  int peer = intArg(info, 3, fn, "peer", 0, c.ranks - 1);
  if (peer == c.rank) throw Napi::RangeError::New(env, std::string("nccl.") + fn + ": 'peer' is this rank (" + std::to_string(peer) + ")");
  // 0 is CUDA's legacy default stream: allowed, as NCCL allows it.
  auto stream = reinterpret_cast<cudaStream_t>(static_cast<uintptr_t>(handleArg(info, 4, fn, "stream", true)));
  auto* p = reinterpret_cast<void*>(static_cast<uintptr_t>(pointer));
  auto count = static_cast<size_t>(bytes);
  ncclResult_t r = receive ? nccl.recv(p, count, ncclUint8, peer, c.comm, stream) : nccl.send(p, count, ncclUint8, peer, c.comm, stream);
  if (r != ncclSuccess)
    throw Napi::Error::New(env, std::string("nccl.") + fn + (receive ? " from rank " : " to rank ") + std::to_string(peer) + " failed: " + ncclError(r));
  return env.Undefined();
}

Napi::Value Send(const Napi::CallbackInfo& info) { return Transfer(info, false); }
Napi::Value Recv(const Napi::CallbackInfo& info) { return Transfer(info, true); }

// groupStart() / groupEnd(): the sends and receives between them start together, so that two
// ranks that each send before they receive do not wait for each other forever.
Napi::Value Group(const Napi::CallbackInfo& info, bool start) {
  Napi::Env env = info.Env();
  const char* fn = start ? "groupStart" : "groupEnd";
  requireLoaded(env, fn);
  ncclResult_t r = start ? nccl.groupStart() : nccl.groupEnd();
  if (r != ncclSuccess) throw Napi::Error::New(env, std::string("nccl.") + fn + " failed: " + ncclError(r));
  return env.Undefined();
}

Napi::Value GroupStart(const Napi::CallbackInfo& info) { return Group(info, true); }
Napi::Value GroupEnd(const Napi::CallbackInfo& info) { return Group(info, false); }

// asyncError(comm): NCCL's asynchronous error (a peer that failed, a network error) as a
// message, or null.
Napi::Value AsyncError(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  requireLoaded(env, "asyncError");
  Comm& c = commArg(info, "asyncError");
  ncclResult_t state = ncclSuccess;
  ncclResult_t r = nccl.commGetAsyncError(c.comm, &state);
  if (r != ncclSuccess) return Napi::String::New(env, "ncclCommGetAsyncError failed: " + ncclError(r));
  return state == ncclSuccess ? env.Null() : Napi::String::New(env, ncclError(state)).As<Napi::Value>();
}

// destroy(comm): after the streams finished their transfers. abort(comm): at once (a failed run).
Napi::Value Close(const Napi::CallbackInfo& info, bool abort) {
  Napi::Env env = info.Env();
  const char* fn = abort ? "abort" : "destroy";
  requireLoaded(env, fn);
  Comm& c = commArg(info, fn);
  ncclResult_t r = abort ? nccl.commAbort(c.comm) : nccl.commDestroy(c.comm);
  c.comm = nullptr;
  if (r != ncclSuccess) throw Napi::Error::New(env, std::string("nccl.") + fn + ": " + ncclError(r));
  return env.Undefined();
}

Napi::Value Destroy(const Napi::CallbackInfo& info) { return Close(info, false); }
Napi::Value Abort(const Napi::CallbackInfo& info) { return Close(info, true); }

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("load", Napi::Function::New(env, Load, "load"));
  exports.Set("uniqueId", Napi::Function::New(env, UniqueId, "uniqueId"));
  exports.Set("initRank", Napi::Function::New(env, InitRank, "initRank"));
  exports.Set("send", Napi::Function::New(env, Send, "send"));
  exports.Set("recv", Napi::Function::New(env, Recv, "recv"));
  exports.Set("groupStart", Napi::Function::New(env, GroupStart, "groupStart"));
  exports.Set("groupEnd", Napi::Function::New(env, GroupEnd, "groupEnd"));
  exports.Set("asyncError", Napi::Function::New(env, AsyncError, "asyncError"));
  exports.Set("destroy", Napi::Function::New(env, Destroy, "destroy"));
  exports.Set("abort", Napi::Function::New(env, Abort, "abort"));
  return exports;
}

}  // namespace

NODE_API_MODULE(synthgrad_nccl, Init)
