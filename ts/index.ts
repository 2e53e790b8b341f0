// synthgrad: decoupled neural interfaces (synthetic gradients) on a C++/CUDA core.
export { Device } from './device';
export { Tensor, Arena } from './tensor';
export type { DType, TensorOptions } from './tensor';
export { Stream, Event } from './stream';
export { Graph } from './graph';
export type { CaptureHooks } from './graph';
export { Random } from './random';
export { Module, Parameter } from './nn/module';
export type { StepContext, Forwarded, Backward, Shape } from './nn/module';
export { Linear, BatchNormLayer, BatchNorm1d, Activation, ReLU, Tanh, Sigmoid, Sequential } from './nn/layers';
export { SoftmaxCrossEntropy, MeanSquaredError } from './nn/losses';
export type { Loss, LossName, LossForward } from './nn/losses';
export { Optimizer, SGD, Adam, learningRateSchedules } from './optim/optimizers';
export type { LearningRateSchedule, OptimizerOptions } from './optim/optimizers';
/** @deprecated the old name of learningRateSchedules (the same object); removed in 0.2 */
export { learningRateSchedules as schedules } from './optim/optimizers';
export { Trainer } from './train/trainer';
export type { TrainerOptions, FitOptions, FitResult, StepMetrics, EpochMetrics, Evaluation } from './train/trainer';
export { Backpropagation } from './train/backprop';
export type { TrainingStrategy } from './train/strategy';
export { predict, Predictions, saveModel, loadModel } from './train/inference';
export type { PredictOptions } from './train/inference';
export { readRun, reportHtml } from './cli/report';
export type { RunRecords } from './cli/report';
export { Dataset } from './data/dataset';
export { parseIdx, readIdx } from './data/idx';
export * as datasets from './data/datasets';
export {
  Curriculum,
  CopyTask,
  RepeatCopyTask,
  repeatCopyLevel,
  TextCorpus,
  TextSource,
  bitsPerCharacter,
  checkSequenceWindow,
} from './data/sequences';
export type {
  SequenceWindow,
  SequenceSource,
  CurriculumOptions,
  CurriculumState,
  CopyTaskOptions,
  RepeatCopyTaskOptions,
  CopyWindow,
  CopyScore,
  TextCorpusOptions,
  TextSplit,
  TextSourceOptions,
} from './data/sequences';
export { buildInfo, threads } from './build-info';
export type { BuildInfo } from './build-info';
/**
 * The raw addon. @deprecated for anything buildInfo() and threads() answer; kept because 0.1.0
 * exported it and the fuzzer and the op tests call the addon through it (scripts/check-layers.js
 * allows this one re-export and no other import of ts/native.ts above the low level).
 */
export { native } from './native';
export { mlp } from './models';
export { Conv2d, MaxPool2d, AvgPool2d, BatchNorm2d, Flatten, cnn } from './nn/conv';
export type { Conv2dOptions, Pool2dOptions, CnnOptions } from './nn/conv';
export { decouple, DecoupledNetwork } from './dni/network';
export { distribute, DistributedNetwork, moduleState } from './distributed/distribute';
export type { DistributeOptions, DistributedFitOptions, DistributedFitResult } from './distributed/distribute';
export { mpi, mpiAvailable, mpiAddonPath, MpiTransport } from './distributed/mpi';
export type { MpiOptions, Payload, Transport } from './distributed/mpi';
export { nccl, ncclAvailable, ncclAddonPath, NcclTransport } from './distributed/nccl';
export type { NcclOptions } from './distributed/nccl';
export { connect } from './distributed/connect';
export { mergeRankCheckpoints, reshardRankCheckpoints, readSavedRun } from './distributed/reshard';
export type { MergeOptions, ReshardOptions, SavedRun } from './distributed/reshard';
export type { ConnectOptions, TransportName } from './distributed/connect';
export type { DecoupleOptions, UpdateSchedule } from './dni/network';
export { feedbackAlignment, FeedbackAlignmentNetwork } from './methods/feedback-alignment';
export type { FeedbackAlignmentOptions, FeedbackBlock } from './methods/feedback-alignment';
export { kickback, KickbackNetwork } from './methods/kickback';
export { targetPropagation, TargetPropagationNetwork } from './methods/target-propagation';
export type { InverseLayer, TargetBlock, TargetPropagationOptions } from './methods/target-propagation';
export { reinforce, ReinforceNetwork } from './methods/reinforce';
export type { ReinforceOptions } from './methods/reinforce';
export { coagent, CoagentNetwork } from './methods/coagent';
export type { CoagentOptions } from './methods/coagent';
export { MethodNetwork, MethodTraining } from './methods/sequential';
export type { LayerForwards } from './methods/sequential';
export { LSTM } from './nn/lstm';
export type { LSTMState, LSTMStateGradient, LSTMOptions, LSTMWindowForward } from './nn/lstm';
export { LSTMSequenceModel, uploadWindow } from './recurrent/model';
export type { SequenceModelOptions, SequenceLossName, WindowTensors, SequenceForward } from './recurrent/model';
export { RecurrentTraining, RECURRENT_METHODS, usesSynthesizer } from './recurrent/training';
export { RtrlLSTM, RTRL_MAX_HIDDEN, checkRtrlSize, rtrlCost } from './methods/rtrl';
export { UoroLSTM, UORO_EPSILON } from './methods/uoro';
export { lstmStep, readoutStep, hostWindow, hostGradientToLSTM, coreParameterCount, zeroGradients } from './methods/lstm-host';
export type { ForwardModeLearner, HostWeights, HostGradients, HostWindow, HostStep } from './methods/lstm-host';
export type {
  RecurrentMethod,
  RecurrentTrainingOptions,
  RecurrentSynthesizerOptions,
  WindowMetrics,
  SymbolWindow,
} from './recurrent/training';
export { DEFAULT_SYNTHESIZER_LR, trainSequences } from './recurrent/run';
export { MultiTimescaleTraining, SlowCore, MultiTimescaleCountTask } from './recurrent/multiscale';
export type {
  MultiTimescaleMethod,
  MultiTimescaleOptions,
  SlowCoreOptions,
  MultiTimescaleMetrics,
  MultiTimescaleEvaluation,
  MultiTimescaleWindow,
  MultiTimescaleCountOptions,
} from './recurrent/multiscale';
export type { TrainSequencesOptions, SequenceProgress, SequenceScore, SequenceTaskName } from './recurrent/run';
export { Synthesizer } from './dni/synthesizer';
export type { SynthesizerOptions, Prediction, TargetScale } from './dni/synthesizer';
export { DecoupledTraining } from './dni/training';
export type { StepRecord } from './dni/training';
export type { ModuleDiagnostics } from './dni/diagnostics';
export { InputModel, inputModelBuilders, mlpInputModel } from './dni/unlock';
export type { UnlockOptions, InputModelBuilder, InputPrediction } from './dni/unlock';
export type { ErrorCode, CodedError } from './errors';
