// Argument checks shared by every backend; see ops.h.
#include "ops.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "conv_geometry.h"
#include "error.h"
#include "stream_order.h"

namespace sg::ops {
namespace {

// Collects the checks of one op call so that every message starts with the op's name.
class Check {
 public:
  Check(const char* op, Stream& s)
      : op_(op), device_(s.device()), stream_(s), capturing_(s.capturing()),
        ordering_(order::checking()) {}

  // A float32 (or `dtype`) tensor on the stream's device that the op reads. Every tensor an
  // op uses passes here, so this is also where a capture learns which memory its graph
  // needs, and where the stream-order checker (stream_order.h) learns what the op accesses.
  const Check& tensor(const Tensor& t, const char* name, DType dtype = DType::Float32) const {
    return use(t, name, dtype, false);
  }

  // A tensor that the op writes (and may read too): checked like tensor().
  const Check& out(const Tensor& t, const char* name, DType dtype = DType::Float32) const {
    return use(t, name, dtype, true);
  }

  // The stream-order check of the accesses collected, just before the op is enqueued (when
  // the checker was on as the op began: the one load of its flag per op).
  void checkOrder() const {
    if (ordering_) order::enqueue(op_, stream_, accesses_);
  }

  const Check& rank(const Tensor& t, const char* name, int64_t r) const {
    if (t.rank() != r)
      throw rangeError(prefix(name) + "must be " + std::to_string(r) + "-D, got shape " +
                       shapeString(t.shape));
    return *this;
  }

  const Check& shape(const Tensor& t, const char* name, const Shape& expected) const {
    if (t.shape != expected)
      throw rangeError(prefix(name) + "must have shape " + shapeString(expected) + ", got " +
                       shapeString(t.shape));
    return *this;
  }

  const Check& sameSize(const Tensor& t, const char* name, const Tensor& ref,
                        const char* refName) const {
    if (t.numel() != ref.numel())
      throw rangeError(prefix(name) + "must have as many elements as '" + refName + "' (" +
                       std::to_string(ref.numel()) + "), got shape " + shapeString(t.shape));
    return *this;
  }

  const Check& distinct(const Tensor& a, const char* nameA, const Tensor& b,
                        const char* nameB) const {
    if (a.storage && b.storage && overlaps(*a.storage, *b.storage))
      throw rangeError(std::string(op_) + ": '" + nameA + "' and '" + nameB +
                       "' must not share memory");
    return *this;
  }

  const Check& finite(double v, const char* name) const {
    if (!std::isfinite(v)) throw rangeError(prefix(name) + "must be finite, got " + str(v));
    return *this;
  }

  const Check& positive(double v, const char* name) const {
    if (!(v > 0) || !std::isfinite(v))
      throw rangeError(prefix(name) + "must be a finite number > 0, got " + str(v));
    return *this;
  }

  const Check& inRange(double v, const char* name, double lo, double hi) const {
    if (!(v >= lo && v < hi))
      throw rangeError(prefix(name) + "must be in [" + str(lo) + ", " + str(hi) + "), got " +
                       str(v));
    return *this;
  }

  // The shortest text that reads back as v (so 0.1 stays "0.1" and 2147483648.5 is whole).
  static std::string str(double v) {
    char buf[40];
    for (int precision = 1; precision <= 17; ++precision) {
      std::snprintf(buf, sizeof buf, "%.*g", precision, v);
      if (std::strtod(buf, nullptr) == v) break;
    }
    return buf;
  }

 private:
  // tensor() and out(): the checks, then the access noted for the stream-order checker.
  const Check& use(const Tensor& t, const char* name, DType dtype, bool write) const {
    if (!t.storage) throw typeError(prefix(name) + "is empty");
    if (t.dtype != dtype)
      throw typeError(prefix(name) + "must be " + dtypeName(dtype) + ", got " +
                      dtypeName(t.dtype));
    if (t.device() != device_)
      throw typeError(prefix(name) + "is on " + t.device().name() + " but the stream is on " +
                      device_.name());
    if (capturing_) backendFor(device_).keepAlive(stream_, t.storage);
    if (ordering_) accesses_.push_back({t.storage, t.dtype, t.shape, name, write});
    return *this;
  }

  std::string prefix(const char* name) const { return std::string(op_) + ": '" + name + "' "; }
  const char* op_;
  Device device_;
  Stream& stream_;
  bool capturing_;
  bool ordering_;                                // the stream-order checker is on
  mutable std::vector<order::Access> accesses_;  // only then
};

// The backend that runs an op on `s`, once `c`'s checks have all passed: every op reaches its
// backend through here, after the stream-order check.
Backend& on(Stream& s, const Check& c) {
  c.checkOrder();
  return backendFor(s.device());
}

// [rows, cols] of a 2-D tensor.
int64_t rows(const Tensor& t) { return t.shape[0]; }
int64_t cols(const Tensor& t) { return t.shape[1]; }

}  // namespace

void copy(Stream& s, const Tensor& src, const Tensor& dst) {
  Check c("copy", s);
  c.tensor(src, "src", src.dtype).out(dst, "dst", src.dtype).sameSize(dst, "dst", src, "src");
  if (src.storage->data() == dst.storage->data()) return;  // the same memory (sizes match)
  c.distinct(src, "src", dst, "dst");
  on(s, c).copy(s, src, dst);
}

void fill(Stream& s, const Tensor& y, double value) {
  Check c("fill", s);
  c.out(y, "y", y.dtype).finite(value, "value");
  // The value must be representable in y's dtype: a cast would be undefined behaviour (int32)
  // or silently infinite (float32).
  if (y.dtype == DType::Int32 &&
      (std::floor(value) != value || value < -2147483648.0 || value > 2147483647.0))
    throw rangeError("fill: 'value' must be an integer in [-2147483648, 2147483647] for an int32 "
                     "tensor, got " + Check::str(value));
  if (y.dtype == DType::Float32 && !std::isfinite(static_cast<float>(value)))
    throw rangeError("fill: 'value' must be within float32 range for a float32 tensor, got " +
                     Check::str(value));
  on(s, c).fill(s, y, value);
}

void axpby(Stream& s, float a, const Tensor& x, float b, const Tensor& y) {
  Check c("axpby", s);
  c.tensor(x, "x").out(y, "y").sameSize(y, "y", x, "x").finite(a, "a").finite(b, "b");
  on(s, c).axpby(s, a, x, b, y);
}

void gemm(Stream& s, const Tensor& a, const Tensor& b, const Tensor& c, bool transA, bool transB,
          float alpha, float beta) {
  Check k("gemm", s);
  k.tensor(a, "a").tensor(b, "b").out(c, "c").rank(a, "a", 2).rank(b, "b", 2).rank(c, "c", 2);
  k.finite(alpha, "alpha").finite(beta, "beta").distinct(a, "a", c, "c").distinct(b, "b", c, "c");
  int64_t M = transA ? cols(a) : rows(a), K = transA ? rows(a) : cols(a);
  int64_t Kb = transB ? cols(b) : rows(b), N = transB ? rows(b) : cols(b);
  if (Kb != K)
    throw rangeError("gemm: inner dimensions differ: op(a) is " + shapeString({M, K}) +
                     ", op(b) is " + shapeString({Kb, N}) +
                     (transA || transB ? " (after the requested transposes)" : ""));
  k.shape(c, "c", {M, N});
  on(s, k).gemm(s, a, b, c, transA, transB, alpha, beta);
}

void linearForward(Stream& s, const Tensor& x, const Tensor& w, const Tensor& bias,
                   const Tensor& y, std::optional<Activation> act) {
  Check c("linearForward", s);
  c.tensor(x, "x").tensor(w, "w").out(y, "y").rank(x, "x", 2).rank(w, "w", 2);
  if (cols(w) != cols(x))
    throw rangeError("linearForward: 'w' must have shape [outFeatures, " + std::to_string(cols(x)) +
                     "] for 'x' of shape " + shapeString(x.shape) + ", got " + shapeString(w.shape));
  c.shape(y, "y", {rows(x), rows(w)}).distinct(x, "x", y, "y").distinct(w, "w", y, "y");
  if (bias.storage) c.tensor(bias, "bias").shape(bias, "bias", {rows(w)}).distinct(bias, "bias", y, "y");
  on(s, c).linearForward(s, x, w, bias, y, act);
}

void addBias(Stream& s, const Tensor& y, const Tensor& bias) {
  Check c("addBias", s);
  c.out(y, "y").tensor(bias, "bias").rank(y, "y", 2).shape(bias, "bias", {cols(y)});
  on(s, c).addBias(s, y, bias);
}

void biasBackward(Stream& s, const Tensor& dy, const Tensor& dbias) {
  Check c("biasBackward", s);
  c.tensor(dy, "dy").out(dbias, "dbias").rank(dy, "dy", 2).shape(dbias, "dbias", {cols(dy)});
  on(s, c).biasBackward(s, dy, dbias);
}

void activationForward(Stream& s, Activation act, const Tensor& x, const Tensor& y) {
  Check c("activationForward", s);
  c.tensor(x, "x").out(y, "y").shape(y, "y", x.shape);
  on(s, c).activationForward(s, act, x, y);
}

void activationBackward(Stream& s, Activation act, const Tensor& y, const Tensor& dy,
                        const Tensor& dx) {
  Check c("activationBackward", s);
  c.tensor(y, "y").tensor(dy, "dy").out(dx, "dx").shape(dy, "dy", y.shape);
  c.shape(dx, "dx", y.shape);
  on(s, c).activationBackward(s, act, y, dy, dx);
}

namespace {

// The checks of batchNormForward, shared with batchNormReluForward (`op` names it in errors).
void checkBatchNormForward(Check& c, const char* op, const Tensor& x, const Tensor& gamma,
                           const Tensor& beta, const Tensor& y, const Tensor& runningMean,
                           const Tensor& runningVar, const Tensor& saveMean,
                           const Tensor& saveInvStd, float momentum, float eps, bool training) {
  c.tensor(x, "x").rank(x, "x", 2);
  Shape features{cols(x)};
  c.tensor(gamma, "gamma").shape(gamma, "gamma", features);
  c.tensor(beta, "beta").shape(beta, "beta", features);
  c.out(y, "y").shape(y, "y", x.shape);
  // Training updates the running statistics and saves the batch's; evaluation reads them.
  auto stats = [&](const Tensor& t, const char* name) {
    (training ? c.out(t, name) : c.tensor(t, name)).shape(t, name, features);
  };
  stats(runningMean, "runningMean");
  stats(runningVar, "runningVar");
  stats(saveMean, "saveMean");
  stats(saveInvStd, "saveInvStd");
  c.distinct(x, "x", y, "y").inRange(momentum, "momentum", 0, 1.0000001).positive(eps, "eps");
  if (training && rows(x) < 2)
    throw rangeError(std::string(op) + ": 'x' needs at least 2 rows in training mode, got " +
                     shapeString(x.shape));
}

// The checks of batchNormBackward, shared with batchNormReluBackward.
void checkBatchNormBackward(Check& c, const Tensor& x, const Tensor& dy, const Tensor& gamma,
                            const Tensor& saveMean, const Tensor& saveInvStd, const Tensor& dx,
                            const Tensor& dgamma, const Tensor& dbeta) {
  c.tensor(x, "x").rank(x, "x", 2);
  Shape features{cols(x)};
  c.tensor(dy, "dy").shape(dy, "dy", x.shape).out(dx, "dx").shape(dx, "dx", x.shape);
  c.tensor(gamma, "gamma").shape(gamma, "gamma", features);
  c.tensor(saveMean, "saveMean").shape(saveMean, "saveMean", features);
  c.tensor(saveInvStd, "saveInvStd").shape(saveInvStd, "saveInvStd", features);
  c.out(dgamma, "dgamma").shape(dgamma, "dgamma", features);
  c.out(dbeta, "dbeta").shape(dbeta, "dbeta", features);
  c.distinct(x, "x", dx, "dx").distinct(dy, "dy", dx, "dx");
}

}  // namespace

void batchNormForward(Stream& s, const Tensor& x, const Tensor& gamma, const Tensor& beta,
                      const Tensor& y, const Tensor& runningMean, const Tensor& runningVar,
                      const Tensor& saveMean, const Tensor& saveInvStd, float momentum,
                      float eps, bool training) {
  Check c("batchNormForward", s);
  checkBatchNormForward(c, "batchNormForward", x, gamma, beta, y, runningMean, runningVar,
                        saveMean, saveInvStd, momentum, eps, training);
  on(s, c).batchNormForward(s, x, gamma, beta, y, runningMean, runningVar, saveMean, saveInvStd,
                         momentum, eps, training);
}

void batchNormBackward(Stream& s, const Tensor& x, const Tensor& dy, const Tensor& gamma,
                       const Tensor& saveMean, const Tensor& saveInvStd, const Tensor& dx,
                       const Tensor& dgamma, const Tensor& dbeta) {
  Check c("batchNormBackward", s);
  checkBatchNormBackward(c, x, dy, gamma, saveMean, saveInvStd, dx, dgamma, dbeta);
  on(s, c).batchNormBackward(s, x, dy, gamma, saveMean, saveInvStd, dx, dgamma, dbeta);
}

void batchNormReluForward(Stream& s, const Tensor& x, const Tensor& gamma, const Tensor& beta,
                          const Tensor& y, const Tensor& runningMean, const Tensor& runningVar,
                          const Tensor& saveMean, const Tensor& saveInvStd, float momentum,
                          float eps, bool training) {
  Check c("batchNormReluForward", s);
  checkBatchNormForward(c, "batchNormReluForward", x, gamma, beta, y, runningMean, runningVar,
                        saveMean, saveInvStd, momentum, eps, training);
  on(s, c).batchNormReluForward(s, x, gamma, beta, y, runningMean, runningVar, saveMean,
                                saveInvStd, momentum, eps, training);
}

void batchNormReluBackward(Stream& s, const Tensor& x, const Tensor& y, const Tensor& dy,
                           const Tensor& gamma, const Tensor& saveMean, const Tensor& saveInvStd,
                           const Tensor& dx, const Tensor& dgamma, const Tensor& dbeta) {
  Check c("batchNormReluBackward", s);
  checkBatchNormBackward(c, x, dy, gamma, saveMean, saveInvStd, dx, dgamma, dbeta);
  c.tensor(y, "y").shape(y, "y", x.shape).distinct(y, "y", dx, "dx");
  on(s, c).batchNormReluBackward(s, x, y, dy, gamma, saveMean, saveInvStd, dx, dgamma, dbeta);
}

void softmaxCrossEntropyForward(Stream& s, const Tensor& logits, const Tensor& labels,
                                const Tensor& probs, const Tensor& loss) {
  Check c("softmaxCrossEntropyForward", s);
  c.tensor(logits, "logits").rank(logits, "logits", 2);
  c.tensor(labels, "labels", DType::Int32).shape(labels, "labels", {rows(logits)});
  c.out(probs, "probs").shape(probs, "probs", logits.shape);
  c.out(loss, "loss").shape(loss, "loss", {1});
  on(s, c).softmaxCrossEntropyForward(s, logits, labels, probs, loss);
}

void softmaxCrossEntropyBackward(Stream& s, const Tensor& probs, const Tensor& labels,
                                 const Tensor& dlogits, float scale) {
  Check c("softmaxCrossEntropyBackward", s);
  c.tensor(probs, "probs").rank(probs, "probs", 2);
  c.tensor(labels, "labels", DType::Int32).shape(labels, "labels", {rows(probs)});
  c.out(dlogits, "dlogits").shape(dlogits, "dlogits", probs.shape).finite(scale, "scale");
  on(s, c).softmaxCrossEntropyBackward(s, probs, labels, dlogits, scale);
}

void sigmoidCrossEntropyForward(Stream& s, const Tensor& logits, const Tensor& targets,
                                const Tensor& probs, const Tensor& loss) {
  Check c("sigmoidCrossEntropyForward", s);
  c.tensor(logits, "logits").rank(logits, "logits", 2);
  c.tensor(targets, "targets").shape(targets, "targets", logits.shape);
  c.out(probs, "probs").shape(probs, "probs", logits.shape);
  c.out(loss, "loss").shape(loss, "loss", {1});
  // The loss is computed from the logits after probs is written: probs must not overwrite them.
  c.distinct(logits, "logits", probs, "probs").distinct(targets, "targets", probs, "probs");
  c.distinct(loss, "loss", logits, "logits").distinct(loss, "loss", targets, "targets");
  c.distinct(loss, "loss", probs, "probs");
  on(s, c).sigmoidCrossEntropyForward(s, logits, targets, probs, loss);
}

void sigmoidCrossEntropyBackward(Stream& s, const Tensor& probs, const Tensor& targets,
                                 const Tensor& dlogits, float scale) {
  Check c("sigmoidCrossEntropyBackward", s);
  c.tensor(probs, "probs").rank(probs, "probs", 2);
  c.tensor(targets, "targets").shape(targets, "targets", probs.shape);
  c.out(dlogits, "dlogits").shape(dlogits, "dlogits", probs.shape).finite(scale, "scale");
  on(s, c).sigmoidCrossEntropyBackward(s, probs, targets, dlogits, scale);
}

namespace {

// [B, H] of an LSTM step's state from gates [B, 4H].
Shape lstmStateShape(const Check& c, const char* op, const Tensor& gates) {
  c.tensor(gates, "gates").rank(gates, "gates", 2);
  if (cols(gates) % 4 != 0)
    throw rangeError(std::string(op) + ": 'gates' must have 4H columns (blocks i, f, g, o of H "
                     "each), got shape " + shapeString(gates.shape));
  return {rows(gates), cols(gates) / 4};
}

}  // namespace

void lstmCellForward(Stream& s, const Tensor& gates, const Tensor& cPrev, const Tensor& c,
                     const Tensor& h) {
  Check k("lstmCellForward", s);
  const Shape state = lstmStateShape(k, "lstmCellForward", gates);
  k.out(gates, "gates").tensor(cPrev, "cPrev").shape(cPrev, "cPrev", state);
  k.out(c, "c").shape(c, "c", state).out(h, "h").shape(h, "h", state);
  // Written: gates (in place), c, h. The kernel reads cPrev and the gates while it writes.
  k.distinct(gates, "gates", cPrev, "cPrev").distinct(c, "c", h, "h");
  k.distinct(c, "c", cPrev, "cPrev").distinct(c, "c", gates, "gates");
  k.distinct(h, "h", cPrev, "cPrev").distinct(h, "h", gates, "gates");
  on(s, k).lstmCellForward(s, gates, cPrev, c, h);
}

void lstmCellBackward(Stream& s, const Tensor& gates, const Tensor& cPrev, const Tensor& c,
                      const Tensor& dh, const Tensor& dc, const Tensor& dgates,
                      const Tensor& dcPrev) {
  Check k("lstmCellBackward", s);
  const Shape state = lstmStateShape(k, "lstmCellBackward", gates);
  k.tensor(cPrev, "cPrev").shape(cPrev, "cPrev", state);
  k.tensor(c, "c").shape(c, "c", state).tensor(dh, "dh").shape(dh, "dh", state);
  if (dc.storage) k.tensor(dc, "dc").shape(dc, "dc", state);
  k.out(dgates, "dgates").shape(dgates, "dgates", gates.shape);
  k.out(dcPrev, "dcPrev").shape(dcPrev, "dcPrev", state);
  // Outputs share memory with nothing, except dcPrev with dc (read before written, element by
  // element: the carried cell gradient updated in place).
  k.distinct(dgates, "dgates", gates, "gates").distinct(dgates, "dgates", cPrev, "cPrev");
  k.distinct(dgates, "dgates", c, "c").distinct(dgates, "dgates", dh, "dh");
  k.distinct(dgates, "dgates", dc, "dc").distinct(dgates, "dgates", dcPrev, "dcPrev");
  k.distinct(dcPrev, "dcPrev", gates, "gates").distinct(dcPrev, "dcPrev", cPrev, "cPrev");
  k.distinct(dcPrev, "dcPrev", c, "c").distinct(dcPrev, "dcPrev", dh, "dh");
  on(s, k).lstmCellBackward(s, gates, cPrev, c, dh, dc, dgates, dcPrev);
}

void mseForward(Stream& s, const Tensor& pred, const Tensor& target, const Tensor& loss) {
  Check c("mseForward", s);
  c.tensor(pred, "pred").tensor(target, "target").shape(target, "target", pred.shape);
  c.out(loss, "loss").shape(loss, "loss", {1});
  on(s, c).mseForward(s, pred, target, loss);
}

void mseBackward(Stream& s, const Tensor& pred, const Tensor& target, const Tensor& dpred,
                 float scale) {
  Check c("mseBackward", s);
  c.tensor(pred, "pred").tensor(target, "target").shape(target, "target", pred.shape);
  c.out(dpred, "dpred").shape(dpred, "dpred", pred.shape).finite(scale, "scale");
  on(s, c).mseBackward(s, pred, target, dpred, scale);
}

void oneHot(Stream& s, const Tensor& labels, const Tensor& out) {
  Check c("oneHot", s);
  c.tensor(labels, "labels", DType::Int32).rank(labels, "labels", 1);
  c.out(out, "out").rank(out, "out", 2);
  if (rows(out) != labels.shape[0])
    throw rangeError("oneHot: 'out' must have " + std::to_string(labels.shape[0]) +
                     " rows (one per label), got shape " + shapeString(out.shape));
  on(s, c).oneHot(s, labels, out);
}

void concatColumns(Stream& s, const Tensor& a, const Tensor& b, const Tensor& out) {
  Check c("concatColumns", s);
  c.tensor(a, "a").rank(a, "a", 2).tensor(b, "b").rank(b, "b", 2);
  if (rows(b) != rows(a))
    throw rangeError("concatColumns: 'b' must have " + std::to_string(rows(a)) +
                     " rows like 'a', got shape " + shapeString(b.shape));
  c.out(out, "out").shape(out, "out", {rows(a), cols(a) + cols(b)});
  c.distinct(a, "a", out, "out").distinct(b, "b", out, "out");
  on(s, c).concatColumns(s, a, b, out);
}

void splitColumns(Stream& s, const Tensor& dout, const Tensor& da, const Tensor& db) {
  Check c("splitColumns", s);
  c.tensor(dout, "dout").rank(dout, "dout", 2);
  if (!da.storage && !db.storage) throw typeError("splitColumns: give 'da', 'db' or both");
  int64_t colsA = -1;
  if (da.storage) {
    c.out(da, "da").rank(da, "da", 2).distinct(da, "da", dout, "dout");
    colsA = cols(da);
  }
  if (db.storage) {
    c.out(db, "db").rank(db, "db", 2).distinct(db, "db", dout, "dout");
    if (colsA < 0) colsA = cols(dout) - cols(db);
  }
  if (colsA < 0 || colsA > cols(dout))
    throw rangeError("splitColumns: 'db' is wider than 'dout' " + shapeString(dout.shape));
  if (da.storage) c.shape(da, "da", {rows(dout), colsA});
  if (db.storage) c.shape(db, "db", {rows(dout), cols(dout) - colsA});
  on(s, c).splitColumns(s, dout, da, db);
}

void writeScalars(Stream& s, const Tensor& y, const std::vector<float>& values) {
  Check c("writeScalars", s);
  c.out(y, "y");
  if (values.empty() || values.size() > 16)
    throw rangeError("writeScalars: 'values' must hold 1 to 16 numbers, got " +
                     std::to_string(values.size()));
  if (y.numel() != static_cast<int64_t>(values.size()))
    throw rangeError("writeScalars: 'y' must have " + std::to_string(values.size()) +
                     " elements (one per value), got shape " + shapeString(y.shape));
  on(s, c).writeScalars(s, y, values);
}

namespace {

// The tensor lists of a group step: same lengths, each state tensor shaped like its
// parameter, and no memory shared between any two of them or with `hyper` (each is written).
void checkGroup(const Check& c, const char* op, const Tensor& hyper,
                const std::vector<Tensor>& params,
                const std::vector<std::pair<const char*, const std::vector<Tensor>*>>& lists) {
  std::vector<const Storage*> seen{hyper.storage.get()};
  auto unique = [&](const Tensor& t, const std::string& name) {
    for (const Storage* p : seen)
      if (p == t.storage.get())
        throw rangeError(std::string(op) + ": " + name + " shares memory with another tensor of the group");
    seen.push_back(t.storage.get());
  };
  for (size_t i = 0; i < params.size(); ++i) {
    const std::string at = "params[" + std::to_string(i) + "]";
    c.out(params[i], at.c_str());
    unique(params[i], "'" + at + "'");
  }
  for (const auto& [name, list] : lists) {
    if (list->size() != params.size())
      throw rangeError(std::string(op) + ": '" + name + "' must hold " +
                       std::to_string(params.size()) + " tensors (one per parameter), got " +
                       std::to_string(list->size()));
    for (size_t i = 0; i < list->size(); ++i) {
      const std::string at = std::string(name) + "[" + std::to_string(i) + "]";
      c.out((*list)[i], at.c_str()).shape((*list)[i], at.c_str(), params[i].shape);
      unique((*list)[i], "'" + at + "'");
    }
  }
}

}  // namespace

void sgdStepGroup(Stream& s, const std::vector<Tensor>& params, const std::vector<Tensor>& grads,
                  const std::vector<Tensor>& velocities, const Tensor& hyper, float momentum,
                  float weightDecay) {
  Check c("sgdStepGroup", s);
  c.inRange(momentum, "momentum", 0, 1).finite(weightDecay, "weightDecay");
  c.tensor(hyper, "hyper").shape(hyper, "hyper", {1});
  if (momentum != 0)
    checkGroup(c, "sgdStepGroup", hyper, params, {{"grads", &grads}, {"velocities", &velocities}});
  else
    checkGroup(c, "sgdStepGroup", hyper, params, {{"grads", &grads}});
  on(s, c).sgdStepGroup(s, params, grads, momentum != 0 ? velocities : std::vector<Tensor>{}, hyper,
                     momentum, weightDecay);
}

void adamStepGroup(Stream& s, const std::vector<Tensor>& params, const std::vector<Tensor>& grads,
                   const std::vector<Tensor>& ms, const std::vector<Tensor>& vs,
                   const Tensor& hyper, float beta1, float beta2, float eps, float weightDecay) {
  Check c("adamStepGroup", s);
  c.inRange(beta1, "beta1", 0, 1).inRange(beta2, "beta2", 0, 1);
  c.positive(eps, "eps").finite(weightDecay, "weightDecay");
  c.tensor(hyper, "hyper").shape(hyper, "hyper", {2});
  checkGroup(c, "adamStepGroup", hyper, params, {{"grads", &grads}, {"ms", &ms}, {"vs", &vs}});
  on(s, c).adamStepGroup(s, params, grads, ms, vs, hyper, beta1, beta2, eps, weightDecay);
}

namespace {

// The window arguments shared by the convolution and pooling ops: strides >= 1, padding >= 0,
// kernel >= 1 and, for a pool, padding at most half the kernel (so that every window holds at
// least one image element: padding never wins a max and a mean never divides by 0). Sizes are
// capped at 2^31 so that no index arithmetic of the kernels can overflow.
void checkWindow(const char* op, int64_t kernelH, int64_t kernelW, int64_t strideH,
                 int64_t strideW, int64_t padH, int64_t padW, bool pool) {
  constexpr int64_t kMax = int64_t(1) << 31;
  auto atLeast = [&](int64_t v, const char* name, int64_t lo) {
    if (v < lo || v > kMax)
      throw rangeError(std::string(op) + ": '" + name + "' must be an integer in [" +
                       std::to_string(lo) + ", 2^31], got " + std::to_string(v));
  };
  atLeast(strideH, "strideH", 1);
  atLeast(strideW, "strideW", 1);
  atLeast(padH, "padH", 0);
  atLeast(padW, "padW", 0);
  if (pool) {
    atLeast(kernelH, "kernelH", 1);
    atLeast(kernelW, "kernelW", 1);
    if (padH > kernelH / 2)
      throw rangeError(std::string(op) + ": 'padH' must be at most kernelH / 2 = " +
                       std::to_string(kernelH / 2) + " (a window must hold an image element), got " +
                       std::to_string(padH));
    if (padW > kernelW / 2)
      throw rangeError(std::string(op) + ": 'padW' must be at most kernelW / 2 = " +
                       std::to_string(kernelW / 2) + " (a window must hold an image element), got " +
                       std::to_string(padW));
  }
}

// The geometry of an NCHW input `x` (named `xName`, shape checked 4-D and non-empty per image)
// under a kernelH x kernelW window producing `k` channels; throws unless the window fits the
// padded image.
Conv2dGeometry geometryOf(const Check& c, const char* op, const Tensor& x, const char* xName,
                          int64_t k, int64_t kernelH, int64_t kernelW, int64_t strideH,
                          int64_t strideW, int64_t padH, int64_t padW, const char* kernelName) {
  c.rank(x, xName, 4);
  const int64_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3];
  if (C < 1 || H < 1 || W < 1)
    throw rangeError(std::string(op) + ": '" + xName + "' must have at least 1 channel, row "
                     "and column ([N, C, H, W]), got shape " + shapeString(x.shape));
  if (H + 2 * padH < kernelH || W + 2 * padW < kernelW)
    throw rangeError(std::string(op) + ": the " + kernelName + " (" + std::to_string(kernelH) +
                     " x " + std::to_string(kernelW) + ") does not fit the padded image (" +
                     std::to_string(H + 2 * padH) + " x " + std::to_string(W + 2 * padW) +
                     ") of '" + xName + "' " + shapeString(x.shape));
  return conv2dGeometry(N, C, H, W, k, kernelH, kernelW, strideH, strideW, padH, padW);
}

// The filters w [K, C, KH, KW] of a convolution over x [N, C, H, W].
void checkFilters(const Check& c, const char* op, const Tensor& x, const Tensor& w) {
  c.tensor(w, "w").rank(w, "w", 4);
  if (w.shape[1] != x.shape[1] || w.shape[0] < 1 || w.shape[2] < 1 || w.shape[3] < 1)
    throw rangeError(std::string(op) + ": 'w' must have shape [outChannels, " +
                     std::to_string(x.shape[1]) + ", kernelH, kernelW] (all >= 1) for 'x' of shape " +
                     shapeString(x.shape) + ", got " + shapeString(w.shape));
}

}  // namespace

void conv2dForward(Stream& s, const Tensor& x, const Tensor& w, const Tensor& bias,
                   const Tensor& y, int64_t strideH, int64_t strideW, int64_t padH,
                   int64_t padW) {
  const char* op = "conv2dForward";
  Check c(op, s);
  c.tensor(x, "x").rank(x, "x", 4);
  checkFilters(c, op, x, w);
  checkWindow(op, w.shape[2], w.shape[3], strideH, strideW, padH, padW, false);
  const Conv2dGeometry g = geometryOf(c, op, x, "x", w.shape[0], w.shape[2], w.shape[3], strideH,
                                      strideW, padH, padW, "kernel of 'w'");
  c.out(y, "y").shape(y, "y", {g.n, g.k, g.oh, g.ow});
  c.distinct(x, "x", y, "y").distinct(w, "w", y, "y");
  if (bias.storage) c.tensor(bias, "bias").shape(bias, "bias", {g.k}).distinct(bias, "bias", y, "y");
  on(s, c).conv2dForward(s, x, w, bias, y, strideH, strideW, padH, padW);
}

void conv2dBackward(Stream& s, const Tensor& x, const Tensor& w, const Tensor& dy,
                    const Tensor& dx, const Tensor& dw, const Tensor& db, int64_t strideH,
                    int64_t strideW, int64_t padH, int64_t padW) {
  const char* op = "conv2dBackward";
  Check c(op, s);
  c.tensor(x, "x").rank(x, "x", 4);
  checkFilters(c, op, x, w);
  checkWindow(op, w.shape[2], w.shape[3], strideH, strideW, padH, padW, false);
  const Conv2dGeometry g = geometryOf(c, op, x, "x", w.shape[0], w.shape[2], w.shape[3], strideH,
                                      strideW, padH, padW, "kernel of 'w'");
  c.tensor(dy, "dy").shape(dy, "dy", {g.n, g.k, g.oh, g.ow});
  if (!dx.storage && !dw.storage && !db.storage)
    throw typeError("conv2dBackward: give 'dx', 'dw', 'db' or several");
  // Every output is written while all inputs are read: none may share memory with anything.
  const std::pair<const Tensor*, const char*> inputs[] = {{&x, "x"}, {&w, "w"}, {&dy, "dy"}};
  const std::pair<const Tensor*, const char*> outputs[] = {{&dx, "dx"}, {&dw, "dw"}, {&db, "db"}};
  if (dx.storage) c.out(dx, "dx").shape(dx, "dx", x.shape);
  if (dw.storage) c.out(dw, "dw").shape(dw, "dw", w.shape);
  if (db.storage) c.out(db, "db").shape(db, "db", {g.k});
  for (const auto& [out, outName] : outputs) {
    for (const auto& [in, inName] : inputs) c.distinct(*out, outName, *in, inName);
    for (const auto& [other, otherName] : outputs)
      if (other < out) c.distinct(*out, outName, *other, otherName);
  }
  on(s, c).conv2dBackward(s, x, w, dy, dx, dw, db, strideH, strideW, padH, padW);
}

void maxPool2dForward(Stream& s, const Tensor& x, const Tensor& y, int64_t kernelH,
                      int64_t kernelW, int64_t strideH, int64_t strideW, int64_t padH,
                      int64_t padW) {
  const char* op = "maxPool2dForward";
  Check c(op, s);
  checkWindow(op, kernelH, kernelW, strideH, strideW, padH, padW, true);
  c.tensor(x, "x");
  const Conv2dGeometry g = geometryOf(c, op, x, "x", x.rank() == 4 ? x.shape[1] : 0, kernelH,
                                      kernelW, strideH, strideW, padH, padW, "window");
  c.out(y, "y").shape(y, "y", {g.n, g.c, g.oh, g.ow}).distinct(x, "x", y, "y");
  on(s, c).maxPool2dForward(s, x, y, kernelH, kernelW, strideH, strideW, padH, padW);
}

void maxPool2dBackward(Stream& s, const Tensor& x, const Tensor& dy, const Tensor& dx,
                       int64_t kernelH, int64_t kernelW, int64_t strideH, int64_t strideW,
                       int64_t padH, int64_t padW) {
  const char* op = "maxPool2dBackward";
  Check c(op, s);
  checkWindow(op, kernelH, kernelW, strideH, strideW, padH, padW, true);
  c.tensor(x, "x");
  const Conv2dGeometry g = geometryOf(c, op, x, "x", x.rank() == 4 ? x.shape[1] : 0, kernelH,
                                      kernelW, strideH, strideW, padH, padW, "window");
  c.tensor(dy, "dy").shape(dy, "dy", {g.n, g.c, g.oh, g.ow});
  c.out(dx, "dx").shape(dx, "dx", x.shape);
  c.distinct(dx, "dx", x, "x").distinct(dx, "dx", dy, "dy");
  on(s, c).maxPool2dBackward(s, x, dy, dx, kernelH, kernelW, strideH, strideW, padH, padW);
}

void avgPool2dForward(Stream& s, const Tensor& x, const Tensor& y, int64_t kernelH,
                      int64_t kernelW, int64_t strideH, int64_t strideW, int64_t padH,
                      int64_t padW) {
  const char* op = "avgPool2dForward";
  Check c(op, s);
  checkWindow(op, kernelH, kernelW, strideH, strideW, padH, padW, true);
  c.tensor(x, "x");
  const Conv2dGeometry g = geometryOf(c, op, x, "x", x.rank() == 4 ? x.shape[1] : 0, kernelH,
                                      kernelW, strideH, strideW, padH, padW, "window");
  c.out(y, "y").shape(y, "y", {g.n, g.c, g.oh, g.ow}).distinct(x, "x", y, "y");
  on(s, c).avgPool2dForward(s, x, y, kernelH, kernelW, strideH, strideW, padH, padW);
}

void avgPool2dBackward(Stream& s, const Tensor& dy, const Tensor& dx, int64_t kernelH,
                       int64_t kernelW, int64_t strideH, int64_t strideW, int64_t padH,
                       int64_t padW) {
  const char* op = "avgPool2dBackward";
  Check c(op, s);
  checkWindow(op, kernelH, kernelW, strideH, strideW, padH, padW, true);
  // The input's shape is dx's.
  c.out(dx, "dx");
  const Conv2dGeometry g = geometryOf(c, op, dx, "dx", dx.rank() == 4 ? dx.shape[1] : 0, kernelH,
                                      kernelW, strideH, strideW, padH, padW, "window");
  c.tensor(dy, "dy").shape(dy, "dy", {g.n, g.c, g.oh, g.ow}).distinct(dx, "dx", dy, "dy");
  on(s, c).avgPool2dBackward(s, dy, dx, kernelH, kernelW, strideH, strideW, padH, padW);
}

void swapLastAxes(Stream& s, const Tensor& x, const Tensor& y) {
  Check c("swapLastAxes", s);
  c.tensor(x, "x").rank(x, "x", 3);
  c.out(y, "y").shape(y, "y", {x.shape[0], x.shape[2], x.shape[1]}).distinct(x, "x", y, "y");
  on(s, c).swapLastAxes(s, x, y);
}

}  // namespace sg::ops
