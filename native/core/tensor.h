// Tensors: a dtype, a shape and a reference to device memory.
//
// Tensors are always contiguous and row-major; a reshape shares the storage. The storage is
// reference-counted so that work queued on a stream keeps its inputs alive even after the
// user has disposed of the tensor.
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "order_hooks.h"

namespace sg {

enum class DType : int { Float32 = 0, Int32 = 1 };
inline size_t dtypeSize(DType) { return 4; }
inline const char* dtypeName(DType t) { return t == DType::Float32 ? "float32" : "int32"; }

enum class DeviceKind : int { Cpu = 0, Cuda = 1 };

struct Device {
  DeviceKind kind = DeviceKind::Cpu;
  int index = 0;
  bool operator==(const Device& o) const { return kind == o.kind && index == o.index; }
  bool operator!=(const Device& o) const { return !(*this == o); }
  std::string name() const {
    return kind == DeviceKind::Cpu ? "cpu" : "cuda:" + std::to_string(index);
  }
};

// A block of memory on one device; `release` hands it back to the backend's pool. A view is a
// Storage for part of another one (its base, kept alive by the view): it releases nothing.
class Storage {
 public:
  Storage(Device device, void* data, size_t bytes, std::function<void(void*, size_t)> release)
      : device_(device), data_(data), bytes_(bytes), release_(std::move(release)) {}
  // The `bytes` bytes at `offset` in `base` (a view of a view is one of its base).
  Storage(const std::shared_ptr<Storage>& base, size_t offset, size_t bytes)
      : device_(base->device_),
        data_(static_cast<char*>(base->data_) + offset),
        bytes_(bytes),
        base_(base->base_ ? base->base_ : base),
        offset_(base->offset_ + offset) {}
  ~Storage() {
    if (order::checking()) order::gone(order::Gone::Storage, this);
    if (release_) release_(data_, bytes_);
  }
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  Device device() const { return device_; }
  void* data() const { return data_; }
  size_t bytes() const { return bytes_; }
  // The allocation this memory belongs to (itself unless a view), and the offset in it.
  const Storage* root() const { return base_ ? base_.get() : this; }
  const std::shared_ptr<Storage>& base() const { return base_; }
  size_t rootOffset() const { return offset_; }

 private:
  Device device_;
  void* data_;
  size_t bytes_;
  std::function<void(void*, size_t)> release_;
  std::shared_ptr<Storage> base_;  // set for a view only
  size_t offset_ = 0;
};

// Whether two storages share any byte (a view and its base, overlapping views, or the same).
inline bool overlaps(const Storage& a, const Storage& b) {
  if (&a == &b) return true;  // also when empty
  if (a.root() != b.root()) return false;
  return a.rootOffset() < b.rootOffset() + b.bytes() && b.rootOffset() < a.rootOffset() + a.bytes();
}

using Shape = std::vector<int64_t>;

inline int64_t numel(const Shape& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

inline std::string shapeString(const Shape& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? "," : "") + std::to_string(shape[i]);
  return s + "]";
}

struct Tensor {
  DType dtype = DType::Float32;
  Shape shape;
  std::shared_ptr<Storage> storage;

  Device device() const { return storage->device(); }
  int64_t numel() const { return sg::numel(shape); }
  int64_t rank() const { return static_cast<int64_t>(shape.size()); }
  size_t bytes() const { return static_cast<size_t>(numel()) * dtypeSize(dtype); }
  float* f32() const { return static_cast<float*>(storage->data()); }
  int32_t* i32() const { return static_cast<int32_t*>(storage->data()); }
};

}  // namespace sg
