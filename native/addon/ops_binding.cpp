// The op functions exported to JavaScript: each converts its arguments and calls the op front
// end (core/ops.h), which checks shapes and enqueues the work. All return undefined at once.
#include "ops_binding.h"

#include "../core/ops.h"
#include "convert.h"

namespace sg::addon {
namespace {

Activation activation(const Args& a, size_t i) {
  std::string name = a.string(i, "activation");
  if (name == "relu") return Activation::Relu;
  if (name == "tanh") return Activation::Tanh;
  if (name == "sigmoid") return Activation::Sigmoid;
  throw a.typeError("activation", "'relu', 'tanh' or 'sigmoid', got '" + name + "'");
}

struct OpEntry {
  const char* name;
  void (*body)(const Args&);
};

const OpEntry kOps[] = {
    {"copy", [](const Args& a) { ops::copy(a.stream(0, "stream"), a.tensor(1, "src"), a.tensor(2, "dst")); }},
    {"fill", [](const Args& a) { ops::fill(a.stream(0, "stream"), a.tensor(1, "y"), a.number(2, "value")); }},
    {"axpby", [](const Args& a) {
    ops::axpby(a.stream(0, "stream"), float(a.number(1, "a")), a.tensor(2, "x"),
               float(a.number(3, "b")), a.tensor(4, "y"));
  }},
    {"gemm", [](const Args& a) {
    ops::gemm(a.stream(0, "stream"), a.tensor(1, "a"), a.tensor(2, "b"), a.tensor(3, "c"),
              a.boolean(4, "transA"), a.boolean(5, "transB"), float(a.number(6, "alpha")),
              float(a.number(7, "beta")));
  }},
    {"linearForward", [](const Args& a) {
    std::optional<Activation> act;
    if (!a.at(5).IsNull() && !a.at(5).IsUndefined()) act = activation(a, 5);
    ops::linearForward(a.stream(0, "stream"), a.tensor(1, "x"), a.tensor(2, "w"),
                       a.tensor(3, "bias", true), a.tensor(4, "y"), act);
  }},
    {"addBias", [](const Args& a) { ops::addBias(a.stream(0, "stream"), a.tensor(1, "y"), a.tensor(2, "bias")); }},
    {"biasBackward", [](const Args& a) {
    ops::biasBackward(a.stream(0, "stream"), a.tensor(1, "dy"), a.tensor(2, "dbias"));
  }},
    {"activationForward", [](const Args& a) {
    ops::activationForward(a.stream(0, "stream"), activation(a, 1), a.tensor(2, "x"),
                           a.tensor(3, "y"));
  }},
    {"activationBackward", [](const Args& a) {
    ops::activationBackward(a.stream(0, "stream"), activation(a, 1), a.tensor(2, "y"),
                            a.tensor(3, "dy"), a.tensor(4, "dx"));
  }},
    {"batchNormForward", [](const Args& a) {
    ops::batchNormForward(a.stream(0, "stream"), a.tensor(1, "x"), a.tensor(2, "gamma"),
                          a.tensor(3, "beta"), a.tensor(4, "y"), a.tensor(5, "runningMean"),
                          a.tensor(6, "runningVar"), a.tensor(7, "saveMean"),
                          a.tensor(8, "saveInvStd"), float(a.number(9, "momentum")),
                          float(a.number(10, "eps")), a.boolean(11, "training"));
  }},
    {"batchNormBackward", [](const Args& a) {
    ops::batchNormBackward(a.stream(0, "stream"), a.tensor(1, "x"), a.tensor(2, "dy"),
                           a.tensor(3, "gamma"), a.tensor(4, "saveMean"),
                           a.tensor(5, "saveInvStd"), a.tensor(6, "dx"), a.tensor(7, "dgamma"),
                           a.tensor(8, "dbeta"));
  }},
    {"softmaxCrossEntropyForward", [](const Args& a) {
    ops::softmaxCrossEntropyForward(a.stream(0, "stream"), a.tensor(1, "logits"),
                                    a.tensor(2, "labels"), a.tensor(3, "probs"),
                                    a.tensor(4, "loss"));
  }},
    {"softmaxCrossEntropyBackward", [](const Args& a) {
    ops::softmaxCrossEntropyBackward(a.stream(0, "stream"), a.tensor(1, "probs"),
                                     a.tensor(2, "labels"), a.tensor(3, "dlogits"),
                                     float(a.number(4, "scale")));
  }},
    {"sigmoidCrossEntropyForward", [](const Args& a) {
    ops::sigmoidCrossEntropyForward(a.stream(0, "stream"), a.tensor(1, "logits"),
                                    a.tensor(2, "targets"), a.tensor(3, "probs"),
                                    a.tensor(4, "loss"));
  }},
    {"sigmoidCrossEntropyBackward", [](const Args& a) {
    ops::sigmoidCrossEntropyBackward(a.stream(0, "stream"), a.tensor(1, "probs"),
                                     a.tensor(2, "targets"), a.tensor(3, "dlogits"),
                                     float(a.number(4, "scale")));
  }},
    {"lstmCellForward", [](const Args& a) {
    ops::lstmCellForward(a.stream(0, "stream"), a.tensor(1, "gates"), a.tensor(2, "cPrev"),
                         a.tensor(3, "c"), a.tensor(4, "h"));
  }},
    {"lstmCellBackward", [](const Args& a) {
    ops::lstmCellBackward(a.stream(0, "stream"), a.tensor(1, "gates"), a.tensor(2, "cPrev"),
                          a.tensor(3, "c"), a.tensor(4, "dh"), a.tensor(5, "dc", true),
                          a.tensor(6, "dgates"), a.tensor(7, "dcPrev"));
  }},
    {"mseForward", [](const Args& a) {
    ops::mseForward(a.stream(0, "stream"), a.tensor(1, "pred"), a.tensor(2, "target"),
                    a.tensor(3, "loss"));
  }},
    {"mseBackward", [](const Args& a) {
    ops::mseBackward(a.stream(0, "stream"), a.tensor(1, "pred"), a.tensor(2, "target"),
                     a.tensor(3, "dpred"), float(a.number(4, "scale")));
  }},
    {"oneHot", [](const Args& a) { ops::oneHot(a.stream(0, "stream"), a.tensor(1, "labels"), a.tensor(2, "out")); }},
    {"concatColumns", [](const Args& a) {
    ops::concatColumns(a.stream(0, "stream"), a.tensor(1, "a"), a.tensor(2, "b"),
                       a.tensor(3, "out"));
  }},
    {"splitColumns", [](const Args& a) {
    ops::splitColumns(a.stream(0, "stream"), a.tensor(1, "dout"), a.tensor(2, "da", true),
                      a.tensor(3, "db", true));
  }},
    {"sgdStep", [](const Args& a) {
    ops::sgdStep(a.stream(0, "stream"), a.tensor(1, "param"), a.tensor(2, "grad"),
                 a.tensor(3, "velocity", true), float(a.number(4, "lr")),
                 float(a.number(5, "momentum")), float(a.number(6, "weightDecay")));
  }},
    {"adamStep", [](const Args& a) {
    ops::adamStep(a.stream(0, "stream"), a.tensor(1, "param"), a.tensor(2, "grad"),
                  a.tensor(3, "m"), a.tensor(4, "v"), float(a.number(5, "lr")),
                  float(a.number(6, "beta1")), float(a.number(7, "beta2")),
                  float(a.number(8, "eps")), float(a.number(9, "weightDecay")),
                  a.integer(10, "step"));
  }},
    {"writeScalars", [](const Args& a) {
    ops::writeScalars(a.stream(0, "stream"), a.tensor(1, "y"), a.floats(2, "values"));
  }},
    {"sgdStepGroup", [](const Args& a) {
    ops::sgdStepGroup(a.stream(0, "stream"), a.tensors(1, "params"), a.tensors(2, "grads"),
                      a.tensors(3, "velocities", true), a.tensor(4, "hyper"),
                      float(a.number(5, "momentum")), float(a.number(6, "weightDecay")));
  }},
    {"adamStepGroup", [](const Args& a) {
    ops::adamStepGroup(a.stream(0, "stream"), a.tensors(1, "params"), a.tensors(2, "grads"),
                       a.tensors(3, "ms"), a.tensors(4, "vs"), a.tensor(5, "hyper"),
                       float(a.number(6, "beta1")), float(a.number(7, "beta2")),
                       float(a.number(8, "eps")), float(a.number(9, "weightDecay")));
  }},
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
