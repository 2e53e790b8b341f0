// Every error synthgrad throws carries a stable `code` beside its class and message, as Node's
// own errors do: programs branch on `code` (or the class), never on the wording, which may
// improve. The native addon sets the same codes on the errors it raises.
//
//   ERR_SYNTHGRAD_INVALID_ARG_TYPE   TypeError: an argument or option of the wrong type or kind,
//                                    an unknown option key
//   ERR_SYNTHGRAD_INVALID_ARG_VALUE  RangeError: a value out of range, or one that does not fit
//                                    (shapes, sizes, data against the model)
//   ERR_SYNTHGRAD_STATE              an object used when it cannot be (before initialize(),
//                                    during fit(), already bound to a trainer, disposed)
//   ERR_SYNTHGRAD_TRAINING           training failed: a non-finite loss, a step that failed
//   ERR_SYNTHGRAD_CHECKPOINT         a checkpoint or model file that cannot be written, read,
//                                    trusted or resumed
//   ERR_SYNTHGRAD_DATA               a data file that cannot be read (IDX, MNIST, run logs)
//   ERR_SYNTHGRAD_CLI                a bad command-line flag (npm start, synthgrad report)
//   ERR_SYNTHGRAD_NATIVE             the native addon failed to load, or failed on a stream

export type ErrorCode =
  | 'ERR_SYNTHGRAD_INVALID_ARG_TYPE'
  | 'ERR_SYNTHGRAD_INVALID_ARG_VALUE'
  | 'ERR_SYNTHGRAD_STATE'
  | 'ERR_SYNTHGRAD_TRAINING'
  | 'ERR_SYNTHGRAD_CHECKPOINT'
  | 'ERR_SYNTHGRAD_DATA'
  | 'ERR_SYNTHGRAD_CLI'
  | 'ERR_SYNTHGRAD_NATIVE';

/** An Error (or TypeError, RangeError) with its `code`. */
export type CodedError<E extends Error = Error> = E & { code: ErrorCode };

function coded<E extends Error>(e: E, code: ErrorCode): CodedError<E> {
  Object.defineProperty(e, 'code', { value: code, enumerable: true, writable: false });
  return e as CodedError<E>;
}

/** A TypeError: the argument is of the wrong type (or an unknown option key). */
export function typeError(message: string, code: ErrorCode = 'ERR_SYNTHGRAD_INVALID_ARG_TYPE'): CodedError<TypeError> {
  return coded(new TypeError(message), code);
}

/** A RangeError: the argument's value is out of range or does not fit. */
export function rangeError(message: string, code: ErrorCode = 'ERR_SYNTHGRAD_INVALID_ARG_VALUE'): CodedError<RangeError> {
  return coded(new RangeError(message), code);
}

/** Any other failure, with its code. */
export function error(code: ErrorCode, message: string): CodedError {
  return coded(new Error(message), code);
}
