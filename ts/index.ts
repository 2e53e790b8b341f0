// synthgrad: decoupled neural interfaces (synthetic gradients) on a C++/CUDA core.
export { Device } from './device';
export { Tensor, Arena } from './tensor';
export type { DType, TensorOptions } from './tensor';
export { Stream, Event } from './stream';
export { Graph } from './graph';
export type { CaptureHooks } from './graph';
export { Random } from './random';
export { Module, Parameter } from './nn/module';
export type { StepContext, Forwarded, Backward } from './nn/module';
export { Linear, BatchNorm1d, Activation, ReLU, Tanh, Sigmoid, Sequential } from './nn/layers';
export { SoftmaxCrossEntropy, MeanSquaredError } from './nn/losses';
export type { Loss, LossName, LossForward } from './nn/losses';
export { Optimizer, SGD, Adam, schedules } from './optim/optimizers';
export type { Schedule, OptimizerOptions } from './optim/optimizers';
export { Trainer, Backpropagation } from './train/trainer';
export type { TrainerOptions, FitOptions, FitResult, StepMetrics, EpochMetrics, Evaluation, TrainingStrategy } from './train/trainer';
export { predict, Predictions, saveModel, loadModel } from './train/inference';
export type { PredictOptions } from './train/inference';
export { readRun, reportHtml } from './cli/report';
export type { RunRecords } from './cli/report';
export { Dataset } from './data/dataset';
export { parseIdx, readIdx } from './data/idx';
export * as datasets from './data/datasets';
export { Curriculum, CopyTask, RepeatCopyTask, repeatCopyLevel, TextCorpus, TextSource, bitsPerCharacter, checkSequenceWindow } from './data/sequences';
export type {
  SequenceWindow, SequenceSource, CurriculumOptions, CurriculumState, CopyTaskOptions, RepeatCopyTaskOptions, CopyWindow, CopyScore,
  TextCorpusOptions, TextSplit, TextSourceOptions,
} from './data/sequences';
export { native } from './native';
export { mlp } from './models';
export { decouple, DecoupledNetwork } from './dni/network';
export type { DecoupleOptions, Schedule as UpdateSchedule } from './dni/network';
export { LSTM } from './nn/lstm';
export type { LSTMState, LSTMStateGradient, LSTMOptions, LSTMWindowForward } from './nn/lstm';
export { LSTMSequenceModel, uploadWindow } from './recurrent/model';
export type { SequenceModelOptions, SequenceLossName, WindowTensors, SequenceForward } from './recurrent/model';
export { RecurrentTraining } from './recurrent/training';
export type { RecurrentMethod, RecurrentTrainingOptions, RecurrentSynthesizerOptions, WindowMetrics, SymbolWindow } from './recurrent/training';
export { trainSequences } from './recurrent/run';
export type { TrainSequencesOptions, SequenceProgress, SequenceScore, SequenceTaskName } from './recurrent/run';
export { Synthesizer } from './dni/synthesizer';
export type { SynthesizerOptions, Prediction } from './dni/synthesizer';
export { DecoupledTraining } from './dni/training';
export type { StepRecord } from './dni/training';
export type { ModuleDiagnostics } from './train/trainer';
export type { ErrorCode, CodedError } from './errors';
