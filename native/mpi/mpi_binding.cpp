// synthgrad_mpi.node: the MPI transport of a decoupled network on several processes
// (docs/distributed.md). It moves the bytes of typed arrays between ranks and nothing else.
//
// MPI is initialised with MPI_THREAD_SERIALIZED: two threads call MPI (the JavaScript thread
// posts sends and receives; a progress thread tests them), never at once, because every MPI
// call holds `mpiLock`. SERIALIZED is enough for that and every MPI library provides it
// cheaply, while MPI_THREAD_MULTIPLE costs locking inside the library and is not always built
// in. The progress thread polls the pending requests with MPI_Test and settles each one's
// Promise on the JavaScript thread through a thread-safe function: JavaScript never waits in
// MPI, and the event loop stays free while messages are in flight.
//
// Errors return (MPI_ERRORS_RETURN on MPI_COMM_WORLD) and reject the Promise with MPI's own
// message, instead of MPI's default of aborting every rank from inside the library.
#include <mpi.h>
#include <napi.h>

#include <algorithm>
#include <chrono>
#include <climits>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace {

std::mutex mpiLock;  // held by every MPI call (MPI_THREAD_SERIALIZED)
bool initialized = false;
bool finalized = false;
int worldRank = -1;
int worldSize = 0;
int tagUpperBound = 32767;  // the MPI standard's least MPI_TAG_UB; the library's own is read at init

std::string mpiError(int code) {
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  if (MPI_Error_string(code, text, &length) != MPI_SUCCESS) return "MPI error " + std::to_string(code);
  return std::string(text, length);
}

// One posted send, receive or barrier, from MPI_I* to its Promise's settling.
struct Op {
  double id = 0;  // the Promise's `id`, for cancel()
  MPI_Request request = MPI_REQUEST_NULL;
  napi_deferred deferred = nullptr;
  Napi::Reference<Napi::Value> buffer;  // the typed array MPI reads or writes, kept alive until then
  bool receive = false;
  size_t bytes = 0;   // a receive's expected size
  std::string what;   // e.g. "receive from rank 1 (tag 5)", for error messages
  std::string error;  // set by the progress thread; empty: success
};

// The progress thread and the JavaScript side of the pending operations.
class Progress {
 public:
  explicit Progress(Napi::Env env) {
    tsfn_ = Napi::ThreadSafeFunction::New(env, Napi::Function::New(env, [](const Napi::CallbackInfo&) {}), "synthgrad-mpi", 0, 1);
    tsfn_.Unref(env);  // an idle transport does not keep the process alive
    thread_ = std::thread([this] { loop(); });
  }

  // JavaScript thread: hands a posted request to the progress thread.
  void add(Napi::Env env, Op* op) {
    if (pending_++ == 0) tsfn_.Ref(env);  // a pending Promise keeps the event loop alive
    {
      std::lock_guard<std::mutex> g(m_);
      active_.push_back(op);
    }
    cv_.notify_one();
  }

  size_t pending() const { return pending_; }

  // JavaScript thread: cancels the pending operation `id` (a receive that timed out), so that it
  // cannot take a later message; its Promise then rejects. False when it is no longer pending.
  bool cancel(double id) {
    Op* op = nullptr;
    {
      std::lock_guard<std::mutex> g(m_);
      for (Op* o : active_)
        if (o->id == id) op = o;
    }
    if (!op) return false;
    // Still alive: only the JavaScript thread (this one) frees an Op, in settle().
    std::lock_guard<std::mutex> g(mpiLock);
    if (op->request == MPI_REQUEST_NULL) return false;
    return MPI_Cancel(&op->request) == MPI_SUCCESS;
  }

  // Stops and joins the thread (nothing may be pending: finalize checks; at teardown nothing can settle).
  void stop() {
    {
      std::lock_guard<std::mutex> g(m_);
      if (stopped_) return;
      stopped_ = true;
    }
    cv_.notify_one();
    if (thread_.joinable()) thread_.join();
    tsfn_.Release();
  }

 private:
  void loop() {
    std::vector<Op*> ops;
    std::vector<Op*> done;
    for (;;) {
      {
        std::unique_lock<std::mutex> l(m_);
        cv_.wait(l, [this] { return stopped_ || !active_.empty(); });
        if (stopped_) return;
        ops = active_;
      }
      done.clear();
      {
        std::lock_guard<std::mutex> g(mpiLock);
        for (Op* op : ops) {
          int flag = 0;
          MPI_Status status;
          // Single-request calls need not set MPI_ERROR; Open MPI reports a truncation to self there.
          status.MPI_ERROR = MPI_SUCCESS;
          int rc = MPI_Test(&op->request, &flag, &status);
          if (rc != MPI_SUCCESS) {
            op->error = op->what + ": " + mpiError(rc);
          } else if (!flag) {
            continue;
          } else if (op->receive) {
            int cancelled = 0;
            MPI_Test_cancelled(&status, &cancelled);
            if (cancelled) {
              op->error = op->what + ": cancelled";
              done.push_back(op);
              continue;
            }
            int count = 0;
            MPI_Get_count(&status, MPI_BYTE, &count);
            if (status.MPI_ERROR != MPI_SUCCESS)
              op->error = op->what + ": " + mpiError(status.MPI_ERROR);
            else if (static_cast<size_t>(count) != op->bytes)
              op->error = op->what + ": expected " + std::to_string(op->bytes) + " bytes, got " + std::to_string(count);
          }
          done.push_back(op);
        }
      }
      if (!done.empty()) {
        {
          std::lock_guard<std::mutex> g(m_);
          for (Op* op : done) active_.erase(std::find(active_.begin(), active_.end(), op));
        }
        for (Op* op : done) tsfn_.NonBlockingCall(op, [this](Napi::Env env, Napi::Function, Op* o) { settle(env, o); });
      } else {
        // Nothing completed: let the peers and the library progress (a hand-off takes microseconds to milliseconds).
        std::this_thread::sleep_for(std::chrono::microseconds(20));
      }
    }
  }

  // JavaScript thread: settles an operation's Promise and frees it.
  void settle(Napi::Env env, Op* op) {
    if (env != nullptr) {
      Napi::HandleScope scope(env);
      if (op->error.empty()) {
        napi_value value = op->receive ? op->buffer.Value() : env.Undefined();
        napi_resolve_deferred(env, op->deferred, value);
      } else {
        napi_reject_deferred(env, op->deferred, Napi::Error::New(env, op->error).Value());
      }
      op->buffer.Reset();
      if (--pending_ == 0) tsfn_.Unref(env);
    }
    delete op;
  }

  Napi::ThreadSafeFunction tsfn_;
  std::thread thread_;
  std::mutex m_;
  std::condition_variable cv_;
  std::vector<Op*> active_;  // guarded by m_
  bool stopped_ = false;     // guarded by m_
  size_t pending_ = 0;       // JavaScript thread only
};

Progress* progress = nullptr;  // never deleted: the process may exit with the thread parked
double nextId = 1;             // JavaScript thread only
napi_env owner = nullptr;      // the environment (main thread or Worker) that initialised MPI

void requireOwner(Napi::Env env, const char* fn) {
  // The Promises settle through the owner's thread-safe function: another thread's would be settled in the wrong environment.
  if (owner != nullptr && static_cast<napi_env>(env) != owner)
    throw Napi::Error::New(env, std::string("mpi.") + fn + ": MPI belongs to the thread (main or Worker) that initialised it");
}

void requireActive(Napi::Env env, const char* fn) {
  requireOwner(env, fn);
  if (!initialized) throw Napi::Error::New(env, std::string("mpi.") + fn + ": MPI is not initialised (call init() first)");
  if (finalized) throw Napi::Error::New(env, std::string("mpi.") + fn + ": MPI was finalised");
}

int intArg(const Napi::CallbackInfo& info, size_t i, const char* fn, const char* name, int lo, int hi) {
  if (info.Length() <= i || !info[i].IsNumber())
    throw Napi::TypeError::New(info.Env(), std::string("mpi.") + fn + ": '" + name + "' must be an integer");
  double v = info[i].As<Napi::Number>().DoubleValue();
  if (!(v >= lo && v <= hi) || v != static_cast<double>(static_cast<long long>(v)))
    throw Napi::RangeError::New(info.Env(), std::string("mpi.") + fn + ": '" + name + "' must be an integer in [" + std::to_string(lo) + ", " +
                                                std::to_string(hi) + "], got " + info[i].ToString().Utf8Value());
  return static_cast<int>(v);
}

Napi::TypedArray bufferArg(const Napi::CallbackInfo& info, const char* fn) {
  if (info.Length() < 1 || !info[0].IsTypedArray())
    throw Napi::TypeError::New(info.Env(), std::string("mpi.") + fn + ": 'data' must be a typed array (e.g. a Float32Array)");
  Napi::TypedArray a = info[0].As<Napi::TypedArray>();
  if (a.ByteLength() > static_cast<size_t>(INT_MAX))
    throw Napi::RangeError::New(info.Env(), std::string("mpi.") + fn + ": 'data' is over 2 GiB, more than one MPI message holds");
  return a;
}

void* bytesOf(Napi::TypedArray a) { return static_cast<char*>(a.ArrayBuffer().Data()) + a.ByteOffset(); }

Napi::Value Init(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  requireOwner(env, "init");
  if (finalized) throw Napi::Error::New(env, "mpi.init: MPI was finalised and cannot start again in this process");
  if (!initialized) {
    std::lock_guard<std::mutex> g(mpiLock);
    int provided = 0;
    int rc = MPI_Init_thread(nullptr, nullptr, MPI_THREAD_SERIALIZED, &provided);
    if (rc != MPI_SUCCESS) throw Napi::Error::New(env, "mpi.init: MPI_Init_thread failed: " + mpiError(rc));
    if (provided < MPI_THREAD_SERIALIZED) {
      MPI_Finalize();
      throw Napi::Error::New(env, "mpi.init: this MPI library does not provide MPI_THREAD_SERIALIZED (needed by the progress thread)");
    }
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_rank(MPI_COMM_WORLD, &worldRank);
    MPI_Comm_size(MPI_COMM_WORLD, &worldSize);
    int* ub = nullptr;
    int found = 0;
    if (MPI_Comm_get_attr(MPI_COMM_WORLD, MPI_TAG_UB, &ub, &found) == MPI_SUCCESS && found && ub) tagUpperBound = *ub;
    initialized = true;
    owner = env;
    progress = new Progress(env);
    // At teardown (the process exiting, a Worker ending) the thread stops; MPI is not finalised
    // there: a rank that leaves without finalize() is a fault that mpirun reports to the others.
    napi_add_env_cleanup_hook(env, [](void*) { if (progress) progress->stop(); }, nullptr);
  }
  char version[MPI_MAX_LIBRARY_VERSION_STRING];
  int length = 0;
  MPI_Get_library_version(version, &length);
  Napi::Object out = Napi::Object::New(env);
  out.Set("rank", worldRank);
  out.Set("size", worldSize);
  out.Set("threadLevel", "serialized");
  out.Set("tagUpperBound", tagUpperBound);
  std::string lib(version, strnlen(version, static_cast<size_t>(length)));  // Open MPI counts the NUL
  out.Set("library", lib.substr(0, lib.find_first_of(",\n")));
  return out;
}

// isend(data, dest, tag) / irecv(data, source, tag): a Promise, settled by the progress thread.
Napi::Value Post(const Napi::CallbackInfo& info, bool receive) {
  const char* fn = receive ? "irecv" : "isend";
  Napi::Env env = info.Env();
  requireActive(env, fn);
  Napi::TypedArray data = bufferArg(info, fn);
  int peer = intArg(info, 1, fn, receive ? "source" : "dest", 0, worldSize - 1);
  int tag = intArg(info, 2, fn, "tag", 0, tagUpperBound);
  auto* op = new Op();
  op->receive = receive;
  op->bytes = data.ByteLength();
  op->what = std::string(receive ? "receive from rank " : "send to rank ") + std::to_string(peer) + " (tag " + std::to_string(tag) + ", " +
             std::to_string(op->bytes) + " bytes) on rank " + std::to_string(worldRank);
  int rc;
  {
    std::lock_guard<std::mutex> g(mpiLock);
    int count = static_cast<int>(op->bytes);
    rc = receive ? MPI_Irecv(bytesOf(data), count, MPI_BYTE, peer, tag, MPI_COMM_WORLD, &op->request)
                 : MPI_Isend(bytesOf(data), count, MPI_BYTE, peer, tag, MPI_COMM_WORLD, &op->request);
  }
  if (rc != MPI_SUCCESS) {
    std::string message = op->what + ": " + mpiError(rc);
    delete op;
    throw Napi::Error::New(env, message);
  }
  napi_value promise;
  napi_create_promise(env, &op->deferred, &promise);
  op->id = nextId++;
  Napi::Object(env, promise).Set("id", op->id);
  op->buffer = Napi::Reference<Napi::Value>::New(data, 1);
  progress->add(env, op);
  return Napi::Value(env, promise);
}

Napi::Value Isend(const Napi::CallbackInfo& info) { return Post(info, false); }
Napi::Value Irecv(const Napi::CallbackInfo& info) { return Post(info, true); }

Napi::Value Ibarrier(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  requireActive(env, "barrier");
  auto* op = new Op();
  op->what = "barrier on rank " + std::to_string(worldRank);
  int rc;
  {
    std::lock_guard<std::mutex> g(mpiLock);
    rc = MPI_Ibarrier(MPI_COMM_WORLD, &op->request);
  }
  if (rc != MPI_SUCCESS) {
    std::string message = op->what + ": " + mpiError(rc);
    delete op;
    throw Napi::Error::New(env, message);
  }
  napi_value promise;
  napi_create_promise(env, &op->deferred, &promise);
  progress->add(env, op);
  return Napi::Value(env, promise);
}

Napi::Value Finalize(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  requireOwner(env, "finalize");
  if (!initialized || finalized) return env.Undefined();
  if (progress->pending() > 0)
    throw Napi::Error::New(env, "mpi.finalize: " + std::to_string(progress->pending()) +
                                    " send(s)/receive(s) still pending; await them (or abort())");
  progress->stop();
  std::lock_guard<std::mutex> g(mpiLock);
  int rc = MPI_Finalize();
  finalized = true;
  if (rc != MPI_SUCCESS) throw Napi::Error::New(env, "mpi.finalize: " + mpiError(rc));
  return env.Undefined();
}

// Ends every rank of the job (MPI_Abort); the error code becomes mpirun's exit status.
Napi::Value Abort(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int code = info.Length() > 0 ? intArg(info, 0, "abort", "code", 0, 255) : 1;
  if (!initialized || finalized) return env.Undefined();
  // Not under mpiLock: the progress thread may be inside MPI_Test; MPI_Abort is allowed to
  // interrupt it, and waiting for the lock could wait on a wedged library.
  MPI_Abort(MPI_COMM_WORLD, code);
  return env.Undefined();
}

// cancel(id): cancels the pending receive whose Promise has this `id`; true when it was pending.
Napi::Value Cancel(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsNumber()) throw Napi::TypeError::New(env, "mpi.cancel: 'id' must be a number (a Promise's id)");
  requireOwner(env, "cancel");
  if (!initialized || finalized) return Napi::Boolean::New(env, false);
  return Napi::Boolean::New(env, progress->cancel(info[0].As<Napi::Number>().DoubleValue()));
}

Napi::Value Pending(const Napi::CallbackInfo& info) {
  if (owner != nullptr && static_cast<napi_env>(info.Env()) != owner) return Napi::Number::New(info.Env(), 0);
  return Napi::Number::New(info.Env(), progress ? static_cast<double>(progress->pending()) : 0);
}

Napi::Value State(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), finalized ? "finalized" : initialized ? "initialized" : "uninitialized");
}

Napi::Object Register(Napi::Env env, Napi::Object exports) {
  exports.Set("init", Napi::Function::New(env, Init, "init"));
  exports.Set("isend", Napi::Function::New(env, Isend, "isend"));
  exports.Set("irecv", Napi::Function::New(env, Irecv, "irecv"));
  exports.Set("ibarrier", Napi::Function::New(env, Ibarrier, "ibarrier"));
  exports.Set("finalize", Napi::Function::New(env, Finalize, "finalize"));
  exports.Set("cancel", Napi::Function::New(env, Cancel, "cancel"));
  exports.Set("abort", Napi::Function::New(env, Abort, "abort"));
  exports.Set("pending", Napi::Function::New(env, Pending, "pending"));
  exports.Set("state", Napi::Function::New(env, State, "state"));
  return exports;
}

}  // namespace

NODE_API_MODULE(synthgrad_mpi, Register)
