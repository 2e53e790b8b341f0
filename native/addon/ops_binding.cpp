// The op functions exported to JavaScript: each converts its arguments and calls the op front
// end (core/ops.h), which checks shapes and enqueues the work. All return undefined at once.
// The conversions are generated from the op table (scripts/gen-ops.js); this file holds the
// helpers they call and the function that every op shares.
#include "ops_binding.h"

#include "../core/ops.h"
#include "convert.h"

namespace sg::addon {
namespace {

// The activation kinds by their JavaScript names.
Activation activation(const Args& a, size_t i, const char* name) {
  std::string kind = a.string(i, name);
  if (kind == "relu") return Activation::Relu;
  if (kind == "tanh") return Activation::Tanh;
  if (kind == "sigmoid") return Activation::Sigmoid;
  throw a.typeError(name, "'relu', 'tanh' or 'sigmoid', got '" + kind + "'");
}

// An activation, or none for null/undefined.
std::optional<Activation> optionalActivation(const Args& a, size_t i, const char* name) {
  if (a.at(i).IsNull() || a.at(i).IsUndefined()) return std::nullopt;
  return activation(a, i, name);
}

struct OpEntry {
  const char* name;
  void (*body)(const Args&);
};

// One entry per op of the op table (core/op_table.json), in its order.
const OpEntry kOps[] = {
#include "gen/op_bindings.inc"
};

// Every op function: convert and check the arguments, enqueue, return undefined.
Napi::Value call(const Napi::CallbackInfo& info) {
  const auto* op = static_cast<const OpEntry*>(info.Data());
  return guarded(info, [&]() -> Napi::Value {
    op->body(Args(info, op->name));
    return info.Env().Undefined();
  });
}

}  // namespace

void registerOps(Napi::Env env, Napi::Object ops) {
  for (const OpEntry& op : kOps)
    ops.Set(op.name, Napi::Function::New(env, call, op.name, const_cast<OpEntry*>(&op)));
}

}  // namespace sg::addon
