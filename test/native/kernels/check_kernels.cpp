// Standalone correctness check of the CPU kernels in native/cpu/kernels.cpp (all but GEMM).
//
// Every kernel is compared with a float64 reference written in this file, on random non-zero
// inputs of odd sizes (rows in {1, 3, 256, 1000}, cols in {1, 7, 256}, plus larger shapes that
// take the multi-threaded paths). On top of that it checks:
//   - backward kernels against float64 central finite differences of the float64 forward
//     (activations, BatchNorm, softmax cross-entropy, MSE);
//   - the conventions: dbias/dgamma/dbeta accumulate (+=, started non-zero), dx overwrites
//     (started as NaN), in-place variants equal out-of-place ones bitwise;
//   - BatchNorm running statistics (training) and untouched save buffers (inference), and a
//     large-mean / small-variance input on which E[x^2] - E[x]^2 in float would fail;
//   - tanh/sigmoid accuracy in ulps over a sweep of all float bit patterns, and special values;
//   - several SGD (momentum, weight decay) and Adam steps against a float64 optimizer;
//   - bit-identical results with 1, 2 and 4 threads;
//   - out-of-range labels: false, and no output written.
// Prints one line per kernel family; exits 1 if anything failed, listing each failure.
//
// Build and run: test/native/kernels/build.sh
#include <algorithm>
#include <cinttypes>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "native/core/parallel.h"
#include "native/cpu/kernels.h"

namespace k = sg::cpu;
using Act = k::Activation;

namespace {

// ---- reporting ---------------------------------------------------------------------------

int gFailures = 0;

// One kernel family: counts comparisons and keeps the worst error as a fraction of the
// tolerance (1.0 = at the limit).
struct Section {
  std::string name;
  int64_t checks = 0, values = 0;
  int failures = 0;
  double worst = 0;
  std::string note;

  explicit Section(std::string n) : name(std::move(n)) {}
  ~Section() {
    std::printf("[%s] %-28s %5" PRId64 " checks, %10" PRId64 " values, worst %.3f of tolerance%s%s\n",
                failures ? "FAIL" : " ok ", name.c_str(), checks, values, worst,
                note.empty() ? "" : "; ", note.c_str());
  }

  void failure(const std::string& what) {
    ++failures;
    ++gFailures;
    if (failures <= 8) std::printf("  FAIL %s: %s\n", name.c_str(), what.c_str());
  }

  void expect(bool ok, const std::string& what) {
    ++checks;
    if (!ok) failure(what);
  }

  // |got - want| <= atol + rtol |want| element-wise; NaN and infinities must match exactly.
  void near(const std::string& what, const float* got, const double* want, int64_t n,
            double rtol, double atol) {
    ++checks;
    values += n;
    int shown = 0;
    for (int64_t i = 0; i < n; ++i) {
      const double g = got[i], w = want[i];
      double err;
      if (std::isnan(w) || std::isinf(w)) {
        err = (std::isnan(w) ? std::isnan(g) : g == w) ? 0.0 : INFINITY;
      } else {
        const double tol = atol + rtol * std::fabs(w);
        err = std::isfinite(g) ? (tol > 0 ? std::fabs(g - w) / tol : (g == w ? 0 : INFINITY))
                               : INFINITY;
      }
      worst = std::max(worst, err);
      if (!(err <= 1.0)) {
        if (shown++ < 3) {
          char buf[256];
          std::snprintf(buf, sizeof buf, "%s [%" PRId64 "]: got %.9g, want %.9g (tol %.3g + %.3g rel)",
                        what.c_str(), i, g, w, atol, rtol);
          failure(buf);
        } else {
          ++failures;
          ++gFailures;
        }
      }
    }
  }

  void near(const std::string& what, const std::vector<float>& got,
            const std::vector<double>& want, double rtol, double atol) {
    expect(got.size() == want.size(), what + ": size");
    near(what, got.data(), want.data(), static_cast<int64_t>(std::min(got.size(), want.size())),
         rtol, atol);
  }

  void bitwise(const std::string& what, const std::vector<float>& a, const std::vector<float>& b) {
    ++checks;
    values += static_cast<int64_t>(a.size());
    if (a.size() != b.size() ||
        (!a.empty() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) != 0)) {
      int64_t i = 0;
      while (i < static_cast<int64_t>(std::min(a.size(), b.size())) &&
             std::memcmp(&a[i], &b[i], sizeof(float)) == 0)
        ++i;
      failure(what + ": differs bitwise from element " + std::to_string(i));
    }
  }
};

std::string shape(int64_t rows, int64_t cols) {
  return "[" + std::to_string(rows) + "x" + std::to_string(cols) + "]";
}

// ---- data --------------------------------------------------------------------------------

std::mt19937_64 rng(0x5eed);

// Uniform in [lo, hi], never within 1e-3 (hi - lo) of zero.
float nonZero(float lo, float hi) {
  std::uniform_real_distribution<double> u(lo, hi);
  for (;;) {
    const double v = u(rng);
    if (std::fabs(v) >= 1e-3 * (hi - lo)) return static_cast<float>(v);
  }
}

std::vector<float> randomVec(int64_t n, float lo = -1.0f, float hi = 1.0f) {
  std::vector<float> v(n);
  for (auto& x : v) x = nonZero(lo, hi);
  return v;
}

std::vector<int32_t> randomLabels(int64_t rows, int64_t classes) {
  std::uniform_int_distribution<int32_t> u(0, static_cast<int32_t>(classes - 1));
  std::vector<int32_t> l(rows);
  for (auto& x : l) x = u(rng);
  return l;
}

std::vector<double> toDouble(const std::vector<float>& v) { return {v.begin(), v.end()}; }

const float kNaN = std::numeric_limits<float>::quiet_NaN();
const float kInf = std::numeric_limits<float>::infinity();

const int64_t kRows[] = {1, 3, 256, 1000};
const int64_t kCols[] = {1, 7, 256};

// ---- float64 references ------------------------------------------------------------------

double actRef(Act act, double x) {
  switch (act) {
    case Act::Relu: return std::isnan(x) ? x : x > 0 ? x : 0.0;  // NaN propagates
    case Act::Tanh: return std::tanh(x);
    case Act::Sigmoid: return 1.0 / (1.0 + std::exp(-x));
  }
  return 0;
}

// d act / dx written from the output y, as the kernel does.
double actGradFromOutput(Act act, double y) {
  switch (act) {
    case Act::Relu: return y > 0 ? 1.0 : 0.0;
    case Act::Tanh: return 1.0 - y * y;
    case Act::Sigmoid: return y * (1.0 - y);
  }
  return 0;
}

const char* actName(Act act) {
  switch (act) {
    case Act::Relu: return "relu";
    case Act::Tanh: return "tanh";
    case Act::Sigmoid: return "sigmoid";
  }
  return "?";
}

struct BnStats {
  std::vector<double> mean, var, invStd;
};

BnStats bnStatsRef(const std::vector<double>& x, int64_t rows, int64_t cols, double eps) {
  BnStats s{std::vector<double>(cols, 0.0), std::vector<double>(cols, 0.0),
            std::vector<double>(cols)};
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) s.mean[c] += x[r * cols + c];
  for (int64_t c = 0; c < cols; ++c) s.mean[c] /= rows;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) {
      const double d = x[r * cols + c] - s.mean[c];
      s.var[c] += d * d;
    }
  for (int64_t c = 0; c < cols; ++c) {
    s.var[c] /= rows;
    s.invStd[c] = 1.0 / std::sqrt(s.var[c] + eps);
  }
  return s;
}

// sum_r w[r, c] * y[r, c] for one column of the training-mode forward, x given by column.
double bnColumnLossRef(const std::vector<double>& xc, const std::vector<double>& wc, double gamma,
                       double beta, double eps) {
  const int64_t n = static_cast<int64_t>(xc.size());
  double mean = 0, var = 0;
  for (double v : xc) mean += v;
  mean /= n;
  for (double v : xc) var += (v - mean) * (v - mean);
  var /= n;
  const double invStd = 1.0 / std::sqrt(var + eps);
  double loss = 0;
  for (int64_t r = 0; r < n; ++r) loss += wc[r] * ((xc[r] - mean) * invStd * gamma + beta);
  return loss;
}

// -log softmax(z)[label] for one row.
double ceRowRef(const double* z, int64_t classes, int32_t label) {
  double m = -INFINITY;
  for (int64_t c = 0; c < classes; ++c) m = std::max(m, z[c]);
  double s = 0;
  for (int64_t c = 0; c < classes; ++c) s += std::exp(z[c] - m);
  return std::log(s) - (z[label] - m);
}

// Indices to probe with finite differences: all of them when few, else a random sample.
std::vector<int64_t> probeIndices(int64_t n, int64_t maxProbes) {
  std::vector<int64_t> idx;
  if (n <= maxProbes) {
    for (int64_t i = 0; i < n; ++i) idx.push_back(i);
  } else {
    std::uniform_int_distribution<int64_t> u(0, n - 1);
    for (int64_t i = 0; i < maxProbes; ++i) idx.push_back(u(rng));
    idx.push_back(0);
    idx.push_back(n - 1);
  }
  return idx;
}

// ---- elementwise and broadcast -----------------------------------------------------------

void testFillAxpby() {
  Section s("fill/fillInt/axpby");
  for (int64_t n : {int64_t{1}, int64_t{7}, int64_t{1000}, int64_t{300001}}) {
    std::vector<float> y(n, kNaN);
    k::fill(y.data(), n, -2.5f);
    s.expect(std::all_of(y.begin(), y.end(), [](float v) { return v == -2.5f; }),
             "fill n=" + std::to_string(n));
    std::vector<int32_t> yi(n, 7);
    k::fillInt(yi.data(), n, -3);
    s.expect(std::all_of(yi.begin(), yi.end(), [](int32_t v) { return v == -3; }),
             "fillInt n=" + std::to_string(n));

    const auto x = randomVec(n), y0 = randomVec(n);
    for (auto [a, b] : {std::pair{1.5f, -0.75f}, std::pair{-2.0f, 1.0f}, std::pair{0.3f, 0.0f}}) {
      std::vector<float> yy = y0;
      if (b == 0.0f) std::fill(yy.begin(), yy.end(), kNaN);  // must be ignored
      k::axpby(n, a, x.data(), b, yy.data());
      std::vector<double> want(n);
      for (int64_t i = 0; i < n; ++i)
        want[i] = static_cast<double>(a) * x[i] + (b == 0.0f ? 0.0 : static_cast<double>(b) * y0[i]);
      s.near("axpby n=" + std::to_string(n) + " a=" + std::to_string(a) + " b=" + std::to_string(b),
             yy, want, 2e-7, 1e-7);
    }
  }
}

void testBias() {
  Section s("addBias/biasBackward");
  for (int64_t rows : {int64_t{1}, int64_t{3}, int64_t{256}, int64_t{1000}, int64_t{10000}})
    for (int64_t cols : {int64_t{1}, int64_t{7}, int64_t{256}, int64_t{1024}}) {
      if (rows * cols > 4000000) continue;
      const auto y0 = randomVec(rows * cols), bias = randomVec(cols);
      std::vector<float> y = y0;
      k::addBias(y.data(), bias.data(), rows, cols);
      std::vector<double> want(rows * cols);
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t c = 0; c < cols; ++c)
          want[r * cols + c] = static_cast<double>(y0[r * cols + c]) + bias[c];
      s.near("addBias " + shape(rows, cols), y, want, 1.2e-7, 0);

      // dbias starts non-zero: the kernel must accumulate.
      const auto dy = randomVec(rows * cols), db0 = randomVec(cols, -3, 3);
      std::vector<float> db = db0;
      k::biasBackward(dy.data(), db.data(), rows, cols);
      std::vector<double> wantDb(cols), mag(cols);
      for (int64_t c = 0; c < cols; ++c) wantDb[c] = db0[c], mag[c] = std::fabs(db0[c]);
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t c = 0; c < cols; ++c)
          wantDb[c] += dy[r * cols + c], mag[c] += std::fabs(dy[r * cols + c]);
      // Tolerance: two float roundings of values bounded by the sum of magnitudes.
      double maxMag = 0;
      for (double m : mag) maxMag = std::max(maxMag, m);
      s.near("biasBackward " + shape(rows, cols), db, wantDb, 2e-7, 2e-7 * maxMag);
    }
}

// ---- activations -------------------------------------------------------------------------

void testActivations() {
  Section s("activations fwd/bwd");
  double worstUlp[3] = {0, 0, 0};
  for (Act act : {Act::Relu, Act::Tanh, Act::Sigmoid}) {
    const std::string name = actName(act);

    // Special values.
    const std::vector<float> special = {0.0f, -0.0f, 1e-30f, -1e-30f, 1e-6f, -1e-6f, 0.5f, -0.5f,
                                        9.0f, -9.0f, 20.0f, -20.0f, 87.0f, -87.0f, 88.5f, -88.5f,
                                        100.0f, -100.0f, 1e30f, -1e30f, kInf, -kInf, kNaN,
                                        std::numeric_limits<float>::denorm_min(),
                                        -std::numeric_limits<float>::denorm_min()};
    std::vector<float> ys(special.size());
    k::activationForward(act, special.data(), ys.data(), static_cast<int64_t>(special.size()));
    std::vector<double> wantS(special.size());
    for (size_t i = 0; i < special.size(); ++i) wantS[i] = actRef(act, special[i]);
    // Results under 1e-37 may be flushed to 0 (sigmoid of very negative inputs).
    s.near(name + " special values", ys.data(), wantS.data(), static_cast<int64_t>(special.size()),
           5e-7, 1e-37);
    if (act == Act::Tanh) s.expect(std::signbit(ys[1]) && !std::signbit(ys[0]), "tanh(+-0) sign");

    // Accuracy sweep over float bit patterns (every 193rd), in ulps of the rounded result.
    if (act != Act::Relu) {
      constexpr int64_t kBatch = 1 << 16;
      std::vector<float> xs, out(kBatch);
      xs.reserve(kBatch);
      double worst = 0;
      float worstX = 0;
      auto flush = [&] {
        const int64_t n = static_cast<int64_t>(xs.size());
        k::activationForward(act, xs.data(), out.data(), n);
        for (int64_t i = 0; i < n; ++i) {
          const double w = actRef(act, xs[i]);
          const float wf = static_cast<float>(w);
          double ulps;
          if (std::fabs(w) < 1e-37) {
            ulps = std::fabs(out[i] - w) <= 1e-37 ? 0 : INFINITY;
          } else {
            const double ulp = std::nextafter(std::fabs(wf), INFINITY) - std::fabs(wf);
            ulps = std::fabs(out[i] - w) / ulp;
          }
          if (!(ulps <= worst)) worst = ulps, worstX = xs[i];
        }
        xs.clear();
      };
      for (uint64_t u = 0; u <= 0xffffffffull; u += 193) {
        uint32_t b = static_cast<uint32_t>(u);
        float x;
        std::memcpy(&x, &b, sizeof x);
        if (std::isnan(x)) continue;
        xs.push_back(x);
        if (static_cast<int64_t>(xs.size()) == kBatch) flush();
      }
      flush();
      worstUlp[static_cast<int>(act)] = worst;
      s.expect(worst <= 4.0, name + " sweep: worst " + std::to_string(worst) + " ulp at x=" +
                                 std::to_string(worstX));
    }

    for (int64_t n : {int64_t{1}, int64_t{7}, int64_t{1000}, int64_t{(1 << 18) + 3}}) {
      const auto x = randomVec(n, -6, 6), dy = randomVec(n);
      std::vector<float> y(n, kNaN), yIn = x;
      k::activationForward(act, x.data(), y.data(), n);
      k::activationForward(act, yIn.data(), yIn.data(), n);  // in place
      std::vector<double> want(n);
      for (int64_t i = 0; i < n; ++i) want[i] = actRef(act, x[i]);
      const std::string tag = name + " n=" + std::to_string(n);
      s.near(tag + " forward", y, want, 5e-7, 1e-37);
      s.bitwise(tag + " forward in place", yIn, y);

      std::vector<float> dx(n, kNaN), dxIn = dy;
      k::activationBackward(act, y.data(), dy.data(), dx.data(), n);
      k::activationBackward(act, y.data(), dxIn.data(), dxIn.data(), n);  // in place
      std::vector<double> wantDx(n);
      for (int64_t i = 0; i < n; ++i)
        wantDx[i] = static_cast<double>(dy[i]) * actGradFromOutput(act, y[i]);
      s.near(tag + " backward", dx, wantDx, 4e-7, 1e-30);
      s.bitwise(tag + " backward in place", dxIn, dx);

      // Against central differences of the float64 forward at x (not at the rounded y).
      std::vector<double> fd, got;
      for (int64_t i : probeIndices(n, 2000)) {
        const double xi = x[i], h = 1e-5;
        if (act == Act::Relu && std::fabs(xi) < 1e-3) continue;
        fd.push_back(dy[i] * (actRef(act, xi + h) - actRef(act, xi - h)) / (2 * h));
        got.push_back(dx[i]);
      }
      std::vector<float> gotF(got.begin(), got.end());
      // The kernel's derivative comes from float y: 1 - y^2 and y (1 - y) lose up to ~1e-7.
      s.near(tag + " backward vs finite differences", gotF, fd, 1e-5, 3e-7);
    }
  }
  char buf[128];
  std::snprintf(buf, sizeof buf, "sweep: tanh %.2f ulp, sigmoid %.2f ulp", worstUlp[1], worstUlp[2]);
  s.note = buf;
}

// ---- BatchNorm ---------------------------------------------------------------------------

void runBnCase(Section& s, int64_t rows, int64_t cols, float offset, float spread, bool fd) {
  const float eps = 1e-5f, momentum = 0.1f;
  std::vector<float> x(rows * cols);
  for (auto& v : x) v = offset + spread * nonZero(-1, 1);
  const auto gamma = randomVec(cols, -2, 2), beta = randomVec(cols);
  const auto rm0 = randomVec(cols), rv0 = randomVec(cols, 0.5f, 2.0f);
  std::vector<float> y(rows * cols, kNaN), rm = rm0, rv = rv0, sm(cols, kNaN), sis(cols, kNaN);
  k::batchNormForward(x.data(), gamma.data(), beta.data(), y.data(), rm.data(), rv.data(),
                      sm.data(), sis.data(), rows, cols, momentum, eps, true);

  const auto xd = toDouble(x);
  const BnStats st = bnStatsRef(xd, rows, cols, eps);
  const std::string tag = "train " + shape(rows, cols) + (offset != 0 ? " offset" : "");
  std::vector<double> wantY(rows * cols), wantRm(cols), wantRv(cols);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c)
      wantY[r * cols + c] = (xd[r * cols + c] - st.mean[c]) * st.invStd[c] * gamma[c] + beta[c];
  const double unbias = rows > 1 ? static_cast<double>(rows) / (rows - 1) : 1.0;
  for (int64_t c = 0; c < cols; ++c) {
    wantRm[c] = (1 - momentum) * static_cast<double>(rm0[c]) + momentum * st.mean[c];
    wantRv[c] = (1 - momentum) * static_cast<double>(rv0[c]) + momentum * st.var[c] * unbias;
  }
  s.near(tag + " y", y, wantY, 1e-5, 1e-5);
  s.near(tag + " saveMean", sm, st.mean, 1e-7, 1e-7 * spread);
  s.near(tag + " saveInvStd", sis, st.invStd, 2e-7, 0);
  s.near(tag + " runningMean", rm, wantRm, 2e-7, 1e-7);
  s.near(tag + " runningVar", rv, wantRv, 2e-7, 1e-9);

  // Backward: dx overwrites (starts NaN), dgamma/dbeta accumulate (start non-zero).
  const auto dy = randomVec(rows * cols), dg0 = randomVec(cols, -3, 3), db0 = randomVec(cols, -3, 3);
  std::vector<float> dx(rows * cols, kNaN), dg = dg0, db = db0;
  k::batchNormBackward(x.data(), dy.data(), gamma.data(), sm.data(), sis.data(), dx.data(),
                       dg.data(), db.data(), rows, cols);
  std::vector<double> sumDy(cols, 0.0), sumDyXhat(cols, 0.0), mag(cols, 0.0);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) {
      const double xhat = (xd[r * cols + c] - st.mean[c]) * st.invStd[c];
      sumDy[c] += dy[r * cols + c];
      sumDyXhat[c] += dy[r * cols + c] * xhat;
      mag[c] += std::fabs(dy[r * cols + c]) * (1 + std::fabs(xhat));
    }
  std::vector<double> wantDx(rows * cols), wantDg(cols), wantDb(cols);
  double colScale = 0, maxMag = 0;
  for (int64_t c = 0; c < cols; ++c) {
    wantDg[c] = dg0[c] + sumDyXhat[c];
    wantDb[c] = db0[c] + sumDy[c];
    colScale = std::max(colScale, std::fabs(gamma[c]) * st.invStd[c]);
    maxMag = std::max(maxMag, mag[c]);
  }
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) {
      const double xhat = (xd[r * cols + c] - st.mean[c]) * st.invStd[c];
      wantDx[r * cols + c] = gamma[c] * st.invStd[c] / rows *
                             (rows * static_cast<double>(dy[r * cols + c]) - sumDy[c] -
                              xhat * sumDyXhat[c]);
    }
  // dx sits at the scale gamma * invStd * |dy|; float rounding of the inputs is ~1e-7 of it.
  s.near(tag + " dx", dx, wantDx, 1e-4, 2e-6 * colScale);
  s.near(tag + " dgamma (+=)", dg, wantDg, 1e-6, 2e-7 * maxMag);
  s.near(tag + " dbeta (+=)", db, wantDb, 1e-6, 2e-7 * maxMag);

  if (!fd) return;
  // Finite differences of sum(dy * y) through the float64 forward, one column at a time.
  std::vector<double> fdv;
  std::vector<float> got;
  for (int64_t i : probeIndices(rows * cols, 300)) {
    const int64_t r = i / cols, c = i % cols;
    std::vector<double> xc(rows), wc(rows);
    for (int64_t q = 0; q < rows; ++q) xc[q] = xd[q * cols + c], wc[q] = dy[q * cols + c];
    const double h = 1e-6;
    xc[r] = xd[i] + h;
    const double lp = bnColumnLossRef(xc, wc, gamma[c], beta[c], eps);
    xc[r] = xd[i] - h;
    const double lm = bnColumnLossRef(xc, wc, gamma[c], beta[c], eps);
    fdv.push_back((lp - lm) / (2 * h));
    got.push_back(dx[i]);
  }
  s.near(tag + " dx vs finite differences", got, fdv, 1e-4, 1e-5 * colScale);
}

void testBatchNorm() {
  Section s("batchNorm fwd/bwd");
  for (int64_t rows : kRows)
    for (int64_t cols : kCols) runBnCase(s, rows, cols, 0.5f, 1.0f, true);
  runBnCase(s, 256, 1024, 0.0f, 3.0f, false);
  runBnCase(s, 10000, 10, -0.25f, 1.0f, true);
  // |mean| >> std: E[x^2] - E[x]^2 in float would lose the variance entirely.
  runBnCase(s, 1000, 7, 1000.0f, 0.01f, false);
  runBnCase(s, 256, 256, -3000.0f, 0.5f, false);

  // Inference: running statistics used, and nothing but y written.
  for (int64_t rows : kRows)
    for (int64_t cols : kCols) {
      const auto x = randomVec(rows * cols, -3, 3), gamma = randomVec(cols, -2, 2),
                 beta = randomVec(cols), rm = randomVec(cols), rv = randomVec(cols, 0.1f, 3.0f);
      std::vector<float> y(rows * cols, kNaN), rmK = rm, rvK = rv, sm(cols, 42.0f), sis(cols, 42.0f);
      k::batchNormForward(x.data(), gamma.data(), beta.data(), y.data(), rmK.data(), rvK.data(),
                          sm.data(), sis.data(), rows, cols, 0.1f, 1e-5f, false);
      std::vector<double> want(rows * cols);
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t c = 0; c < cols; ++c)
          want[r * cols + c] = (static_cast<double>(x[r * cols + c]) - rm[c]) /
                                   std::sqrt(static_cast<double>(rv[c]) + 1e-5f) * gamma[c] +
                               beta[c];
      const std::string tag = "eval " + shape(rows, cols);
      s.near(tag + " y", y, want, 1e-6, 1e-6);
      s.bitwise(tag + " runningMean untouched", rmK, rm);
      s.bitwise(tag + " runningVar untouched", rvK, rv);
      s.bitwise(tag + " saveMean untouched", sm, std::vector<float>(cols, 42.0f));
      s.bitwise(tag + " saveInvStd untouched", sis, std::vector<float>(cols, 42.0f));
    }
}

// ---- losses ------------------------------------------------------------------------------

void runSoftmaxCase(Section& s, int64_t rows, int64_t classes, bool extreme) {
  auto z = randomVec(rows * classes, -5, 5);
  if (extreme) {
    // Large logits (overflow without the max subtraction), and huge spreads (underflow).
    for (int64_t c = 0; c < classes; ++c) z[c] += 1000.0f;
    if (rows > 1)
      for (int64_t c = 0; c < classes; ++c) z[classes + c] = c % 2 ? -1e4f : 50.0f;
    if (rows > 2) z[2 * classes] = -kInf;  // masked logit: probability exactly 0
  }
  const auto labels = randomLabels(rows, classes);
  std::vector<float> probs(rows * classes, kNaN);
  float loss = kNaN;
  const bool ok = k::softmaxCrossEntropyForward(z.data(), labels.data(), probs.data(), &loss,
                                                rows, classes);
  const std::string tag = shape(rows, classes) + (extreme ? " extreme" : "");
  s.expect(ok, tag + " returned false");

  const auto zd = toDouble(z);
  std::vector<double> wantP(rows * classes);
  double wantLoss = 0;
  for (int64_t r = 0; r < rows; ++r) {
    const double* zr = zd.data() + r * classes;
    const double m = *std::max_element(zr, zr + classes);
    double sum = 0;
    for (int64_t c = 0; c < classes; ++c) sum += std::exp(zr[c] - m);
    for (int64_t c = 0; c < classes; ++c) wantP[r * classes + c] = std::exp(zr[c] - m) / sum;
    wantLoss += ceRowRef(zr, classes, labels[r]);
  }
  wantLoss /= rows;
  s.near(tag + " probs", probs, wantP, 1e-6, 1e-37);
  s.near(tag + " loss", &loss, &wantLoss, 1, 1e-6, 1e-7);

  // Backward: overwrite (start NaN), scale / rows.
  for (float scale : {1.0f, -0.37f}) {
    std::vector<float> d(rows * classes, kNaN);
    k::softmaxCrossEntropyBackward(probs.data(), labels.data(), d.data(), rows, classes, scale);
    std::vector<double> want(rows * classes);
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < classes; ++c)
        want[r * classes + c] =
            static_cast<double>(scale) * (probs[r * classes + c] - (c == labels[r] ? 1.0 : 0.0)) / rows;
    const double unit = std::fabs(scale) / rows;
    s.near(tag + " dlogits scale=" + std::to_string(scale), d, want, 3e-7, 1e-37);

    // In place (dlogits == probs) must give the same bits.
    std::vector<float> inPlace = probs;
    k::softmaxCrossEntropyBackward(inPlace.data(), labels.data(), inPlace.data(), rows, classes,
                                   scale);
    s.bitwise(tag + " dlogits in place", inPlace, d);

    if (extreme) continue;  // finite differences need a smooth, moderate region
    std::vector<double> fdv;
    std::vector<float> got;
    for (int64_t i : probeIndices(rows * classes, 1000)) {
      const int64_t r = i / classes;
      std::vector<double> zr(zd.begin() + r * classes, zd.begin() + (r + 1) * classes);
      const double h = 1e-5;
      zr[i % classes] = zd[i] + h;
      const double lp = ceRowRef(zr.data(), classes, labels[r]);
      zr[i % classes] = zd[i] - h;
      const double lm = ceRowRef(zr.data(), classes, labels[r]);
      fdv.push_back(scale * (lp - lm) / (2 * h) / rows);
      got.push_back(d[i]);
    }
    s.near(tag + " dlogits vs finite differences", got, fdv, 1e-5, 1e-6 * unit);
  }
}

void testSoftmaxCrossEntropy() {
  Section s("softmaxCrossEntropy");
  for (int64_t rows : kRows)
    for (int64_t classes : kCols) runSoftmaxCase(s, rows, classes, false);
  for (int64_t rows : {int64_t{3}, int64_t{256}})
    for (int64_t classes : {int64_t{7}, int64_t{256}}) runSoftmaxCase(s, rows, classes, true);
  runSoftmaxCase(s, 10000, 10, false);

  // Out-of-range labels: false, and neither probs nor loss written. (-1 is kIgnoredLabel, a
  // row without a target: test/lstm-ops.test.ts checks that it scores nothing.)
  for (int64_t rows : {int64_t{1}, int64_t{3}, int64_t{10000}})
    for (int32_t bad : {-2, 10, 1 << 30}) {
      const auto z = randomVec(rows * 10);
      auto labels = randomLabels(rows, 10);
      labels[rows - 1] = bad;
      std::vector<float> probs(rows * 10, 42.0f);
      float loss = 42.0f;
      const bool ok =
          k::softmaxCrossEntropyForward(z.data(), labels.data(), probs.data(), &loss, rows, 10);
      const std::string tag = "bad label " + std::to_string(bad) + " rows=" + std::to_string(rows);
      s.expect(!ok, tag + ": returned true");
      s.expect(loss == 42.0f, tag + ": loss written");
      s.expect(std::all_of(probs.begin(), probs.end(), [](float v) { return v == 42.0f; }),
               tag + ": probs written");
    }
}

void testMse() {
  Section s("mse");
  for (int64_t n : {int64_t{1}, int64_t{7}, int64_t{1000}, int64_t{(1 << 20) + 5}}) {
    const auto pred = randomVec(n, -2, 2), target = randomVec(n, -2, 2);
    float loss = kNaN;
    k::mseForward(pred.data(), target.data(), &loss, n);
    double want = 0;
    for (int64_t i = 0; i < n; ++i) {
      const double d = static_cast<double>(pred[i]) - target[i];
      want += d * d;
    }
    want /= n;
    const std::string tag = "n=" + std::to_string(n);
    s.near(tag + " loss", &loss, &want, 1, 1e-6, 0);

    for (float scale : {1.0f, 2.5f}) {
      std::vector<float> d(n, kNaN);
      k::mseBackward(pred.data(), target.data(), d.data(), n, scale);
      std::vector<double> wantD(n);
      for (int64_t i = 0; i < n; ++i)
        wantD[i] = scale * 2.0 * (static_cast<double>(pred[i]) - target[i]) / n;
      s.near(tag + " dpred scale=" + std::to_string(scale), d, wantD, 4e-7, 1e-37);

      std::vector<double> fdv;
      std::vector<float> got;
      for (int64_t i : probeIndices(n, 500)) {
        // Only element i changes: the rest of the sum cancels in the difference.
        const double h = 1e-5, p = pred[i], t = target[i];
        fdv.push_back(scale * ((p + h - t) * (p + h - t) - (p - h - t) * (p - h - t)) / (2 * h) / n);
        got.push_back(d[i]);
      }
      s.near(tag + " dpred vs finite differences", got, fdv, 1e-6, 1e-37);
    }
  }
}

// ---- shape ops ---------------------------------------------------------------------------

void testShapeOps() {
  Section s("oneHot/concat/split");
  for (int64_t rows : kRows)
    for (int64_t classes : kCols) {
      const auto labels = randomLabels(rows, classes);
      std::vector<float> out(rows * classes, kNaN);
      s.expect(k::oneHot(labels.data(), out.data(), rows, classes), "oneHot returned false");
      std::vector<double> want(rows * classes, 0.0);
      for (int64_t r = 0; r < rows; ++r) want[r * classes + labels[r]] = 1.0;
      s.near("oneHot " + shape(rows, classes), out, want, 0, 0);

      auto bad = labels;
      bad[rows / 2] = rows % 2 ? -1 : static_cast<int32_t>(classes);
      std::vector<float> untouched(rows * classes, 42.0f);
      s.expect(!k::oneHot(bad.data(), untouched.data(), rows, classes),
               "oneHot bad label returned true " + shape(rows, classes));
      s.expect(std::all_of(untouched.begin(), untouched.end(), [](float v) { return v == 42.0f; }),
               "oneHot bad label wrote output " + shape(rows, classes));
    }

  for (int64_t rows : {int64_t{1}, int64_t{3}, int64_t{1000}})
    for (auto [ca, cb] : {std::pair<int64_t, int64_t>{1, 1}, {7, 256}, {256, 7}, {0, 5}, {5, 0}}) {
      const auto a = randomVec(rows * ca), b = randomVec(rows * cb);
      const int64_t cols = ca + cb;
      std::vector<float> out(rows * cols, kNaN);
      k::concatColumns(a.data(), b.data(), out.data(), rows, ca, cb);
      std::vector<float> want(rows * cols);
      for (int64_t r = 0; r < rows; ++r) {
        std::copy(a.begin() + r * ca, a.begin() + (r + 1) * ca, want.begin() + r * cols);
        std::copy(b.begin() + r * cb, b.begin() + (r + 1) * cb, want.begin() + r * cols + ca);
      }
      const std::string tag = shape(rows, ca) + "|" + shape(rows, cb);
      s.bitwise("concat " + tag, out, want);

      std::vector<float> da(rows * ca, kNaN), db(rows * cb, kNaN);
      k::splitColumns(out.data(), da.data(), db.data(), rows, ca, cb);
      s.bitwise("split " + tag + " da", da, a);
      s.bitwise("split " + tag + " db", db, b);
      std::vector<float> onlyA(rows * ca, kNaN), onlyB(rows * cb, kNaN);
      k::splitColumns(out.data(), onlyA.data(), nullptr, rows, ca, cb);
      k::splitColumns(out.data(), nullptr, onlyB.data(), rows, ca, cb);
      s.bitwise("split " + tag + " da only", onlyA, a);
      s.bitwise("split " + tag + " db only", onlyB, b);
    }
}

// ---- optimizers --------------------------------------------------------------------------

void testOptimizers() {
  Section s("sgdStep/adamStep");
  for (int64_t n : {int64_t{1}, int64_t{7}, int64_t{1000}, int64_t{(1 << 18) + 1}}) {
    // SGD: momentum with weight decay (velocity starts at 0, as in PyTorch), and plain SGD
    // with weight decay (velocity unused: null).
    for (auto [lr, mom, wd] : {std::tuple{0.1f, 0.9f, 1e-2f}, std::tuple{0.05f, 0.0f, 0.1f},
                               std::tuple{0.01f, 0.5f, 0.0f}}) {
      auto p = randomVec(n);
      std::vector<float> v(n, 0.0f);
      std::vector<double> pd = toDouble(p), vd(n, 0.0);
      const std::string tag = "sgd n=" + std::to_string(n) + " momentum=" + std::to_string(mom) +
                              " wd=" + std::to_string(wd);
      for (int step = 1; step <= 5; ++step) {
        const auto g = randomVec(n);
        k::sgdStep(p.data(), g.data(), mom == 0.0f ? nullptr : v.data(), n, lr, mom, wd);
        for (int64_t i = 0; i < n; ++i) {
          const double gi = g[i] + static_cast<double>(wd) * pd[i];
          if (mom != 0.0f) {
            vd[i] = mom * vd[i] + gi;
            pd[i] -= lr * vd[i];
          } else {
            pd[i] -= lr * gi;
          }
        }
        s.near(tag + " step " + std::to_string(step) + " param", p, pd, 1e-5, 1e-6);
        if (mom != 0.0f) s.near(tag + " step " + std::to_string(step) + " velocity", v, vd, 1e-5, 1e-6);
      }
    }
    // Adam with and without (L2) weight decay.
    for (float wd : {0.0f, 0.05f}) {
      const float lr = 1e-2f, b1 = 0.9f, b2 = 0.999f, eps = 1e-8f;
      auto p = randomVec(n);
      std::vector<float> m(n, 0.0f), v(n, 0.0f);
      std::vector<double> pd = toDouble(p), md(n, 0.0), vd(n, 0.0);
      const std::string tag = "adam n=" + std::to_string(n) + " wd=" + std::to_string(wd);
      for (int step = 1; step <= 6; ++step) {
        const auto g = randomVec(n);
        k::adamStep(p.data(), g.data(), m.data(), v.data(), n, lr, b1, b2, eps, wd, step);
        const double bc1 = 1 - std::pow(static_cast<double>(b1), step);
        const double bc2 = 1 - std::pow(static_cast<double>(b2), step);
        for (int64_t i = 0; i < n; ++i) {
          const double gi = g[i] + static_cast<double>(wd) * pd[i];
          md[i] = b1 * md[i] + (1 - static_cast<double>(b1)) * gi;
          vd[i] = b2 * vd[i] + (1 - static_cast<double>(b2)) * gi * gi;
          pd[i] -= lr * (md[i] / bc1) / (std::sqrt(vd[i] / bc2) + eps);
        }
        const std::string st = tag + " step " + std::to_string(step);
        s.near(st + " param", p, pd, 1e-5, 1e-6);
        // m = b1 m + (1 - b1) g can cancel: its float error is absolute, ~1e-8 of |g| ~ 1.
        s.near(st + " m", m, md, 1e-5, 5e-8);
        s.near(st + " v", v, vd, 1e-5, 1e-12);
      }
    }
  }
}

// ---- determinism across thread counts ----------------------------------------------------

// Random values with +-1e16 spikes every 331 rows. Summed in double, ordinary values are
// rounded away next to a spike, so any change in how a sum is grouped (chunking that followed
// the thread count) changes the result visibly; with plain data double accumulation would
// almost always hide it after rounding to float.
std::vector<float> spiky(int64_t rows, int64_t cols) {
  auto v = randomVec(rows * cols);
  for (int64_t r = 5; r < rows; r += 331)
    for (int64_t c = 0; c < cols; ++c) v[r * cols + c] = (r / 331) % 2 ? 1e16f : -1e16f;
  return v;
}

// Runs every kernel on shapes large enough to be split, and returns all outputs.
std::vector<std::vector<float>> runAll(int threads) {
  sg::setParallelism(threads);
  std::mt19937_64 saved = rng;
  rng.seed(0xd37);  // the same inputs for every thread count
  std::vector<std::vector<float>> outs;

  for (auto [rows, cols] : {std::pair<int64_t, int64_t>{256, 1024}, {10000, 10}, {3000, 300},
                            {256, 256}, {5000, 1}}) {
    const int64_t n = rows * cols;
    const auto x = randomVec(n, -2, 3), dy = randomVec(n), gamma = randomVec(cols),
               beta = randomVec(cols);
    std::vector<float> db(cols, 0.5f);
    k::biasBackward(dy.data(), db.data(), rows, cols);
    outs.push_back(db);

    std::vector<float> y(n), rm(cols, 0.0f), rv(cols, 1.0f), sm(cols), sis(cols);
    k::batchNormForward(x.data(), gamma.data(), beta.data(), y.data(), rm.data(), rv.data(),
                        sm.data(), sis.data(), rows, cols, 0.1f, 1e-5f, true);
    std::vector<float> dx(n), dg(cols, 0.25f), dbe(cols, -0.25f);
    k::batchNormBackward(x.data(), dy.data(), gamma.data(), sm.data(), sis.data(), dx.data(),
                         dg.data(), dbe.data(), rows, cols);
    for (auto* v : {&y, &rm, &rv, &sm, &sis, &dx, &dg, &dbe}) outs.push_back(*v);

    // The same reductions on spiky inputs.
    const auto xs = spiky(rows, cols), dys = spiky(rows, cols);
    std::vector<float> dbs(cols, 0.5f), ys(n), rms(cols, 0.0f), rvs(cols, 1.0f), sms(cols),
        siss(cols), dxs(n), dgs(cols, 0.25f), dbes(cols, -0.25f);
    k::biasBackward(dys.data(), dbs.data(), rows, cols);
    k::batchNormForward(xs.data(), gamma.data(), beta.data(), ys.data(), rms.data(), rvs.data(),
                        sms.data(), siss.data(), rows, cols, 0.1f, 1e-5f, true);
    k::batchNormBackward(x.data(), dys.data(), gamma.data(), sm.data(), sis.data(), dxs.data(),
                         dgs.data(), dbes.data(), rows, cols);
    for (auto* v : {&dbs, &ys, &rms, &rvs, &sms, &siss, &dxs, &dgs, &dbes}) outs.push_back(*v);

    const auto labels = randomLabels(rows, cols);
    std::vector<float> probs(n), loss(1), dl(n);
    k::softmaxCrossEntropyForward(x.data(), labels.data(), probs.data(), loss.data(), rows, cols);
    k::softmaxCrossEntropyBackward(probs.data(), labels.data(), dl.data(), rows, cols, 1.0f);
    outs.push_back(probs);
    outs.push_back(loss);
    outs.push_back(dl);
  }

  const int64_t n = (1 << 21) + 3;
  const auto a = randomVec(n), b = randomVec(n);
  std::vector<float> loss(1), d(n);
  k::mseForward(a.data(), b.data(), loss.data(), n);
  const auto as = spiky(n, 1);
  std::vector<float> lossSpiky(1);
  k::mseForward(as.data(), b.data(), lossSpiky.data(), n);
  outs.push_back(lossSpiky);
  k::mseBackward(a.data(), b.data(), d.data(), n, 1.0f);
  outs.push_back(loss);
  outs.push_back(d);
  for (Act act : {Act::Relu, Act::Tanh, Act::Sigmoid}) {
    std::vector<float> y(n), dx(n);
    k::activationForward(act, a.data(), y.data(), n);
    k::activationBackward(act, y.data(), b.data(), dx.data(), n);
    outs.push_back(y);
    outs.push_back(dx);
  }
  std::vector<float> p = a, m(n, 0.0f), v(n, 0.0f), vel(n, 0.0f), p2 = a;
  k::adamStep(p.data(), b.data(), m.data(), v.data(), n, 1e-3f, 0.9f, 0.999f, 1e-8f, 0.01f, 1);
  k::sgdStep(p2.data(), b.data(), vel.data(), n, 0.1f, 0.9f, 0.01f);
  std::vector<float> ax = b;
  k::axpby(n, 0.5f, a.data(), -1.5f, ax.data());
  for (auto* o : {&p, &m, &v, &p2, &vel, &ax}) outs.push_back(*o);

  rng = saved;
  return outs;
}

void testDeterminism() {
  Section s("determinism 1/2/4 threads");
  const int before = sg::parallelism();
  const auto one = runAll(1);
  for (int threads : {2, 4}) {
    const auto many = runAll(threads);
    s.expect(many.size() == one.size(), "output count");
    for (size_t i = 0; i < std::min(one.size(), many.size()); ++i)
      s.bitwise("output #" + std::to_string(i) + " with " + std::to_string(threads) + " threads",
                many[i], one[i]);
  }
  sg::setParallelism(before);
}

}  // namespace

int main() {
  std::printf("check_kernels: parallelism %d, kernels on %s\n", sg::parallelism(),
              sg::cpu::kernelsIsa());
  testFillAxpby();
  testBias();
  testActivations();
  testBatchNorm();
  testSoftmaxCrossEntropy();
  testMse();
  testShapeOps();
  testOptimizers();
  testDeterminism();
  if (gFailures) {
    std::printf("check_kernels: %d FAILURES\n", gFailures);
    return 1;
  }
  std::printf("check_kernels: all passed\n");
  return 0;
}
