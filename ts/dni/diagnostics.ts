// What the decoupled training strategy measures about its synthesizers (fit's `diagnoseEvery`).
// A type of dni/: the generic trainer only passes these records through to onStep.

/**
 * How well a synthesizer predicts its module's gradient. The gradients are compared on the units that reach the module's
 * parameters: where the module ends with a ReLU, those with h > 0 (ĝ is thrown away elsewhere).
 */
export interface ModuleDiagnostics {
  /** 1-based module whose output the synthesizer sees */
  module: number;
  /** the synthesizer's latest L2 loss */
  synthesizerLoss: number;
  /** cosine similarity of the synthetic and the true backpropagated gradient on a probe batch */
  cosine: number;
  /** |synthetic| / |true| gradient norms on the probe batch (1 when the scales agree) */
  normRatio: number;
  /**
   * cosine similarity of the synthetic gradient and the target it regresses onto with λ = 0
   * (ĝ of the next module carried back through it; the true gradient for the last synthesizer):
   * how well the synthesizer fits, apart from how good its target is
   */
  targetCosine: number;
  /** with `unlock`: the latest L2 loss of the input model that predicts this module's output (the next module's input) */
  inputLoss?: number;
  /**
   * with `unlock`: cosine similarity of that synthetic input Î(x) and this module's output on
   * the true forward path (what evaluation feeds the next module), on the probe batch
   */
  inputCosine?: number;
}
