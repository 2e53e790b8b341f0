// Errors thrown by the native addon come from Node's own realm, not jest's sandbox, so
// `toThrow(RangeError)` cannot match them by constructor; compare the class name instead.
export function errorOf(fn: () => unknown): Error {
  try {
    fn();
  } catch (e) {
    return e as Error;
  }
  throw new Error('expected the call to throw, it returned normally');
}

/** The class name of the error `fn` throws: 'TypeError', 'RangeError', 'Error'. */
export function errorName(fn: () => unknown): string {
  return errorOf(fn).name;
}

/** `fn` throws synchronously an error of class `name` whose message matches. */
export function expectThrows(fn: () => unknown, name: 'TypeError' | 'RangeError', message: RegExp): void {
  const error = errorOf(fn);
  expect(error.name).toBe(name);
  expect(error.message).toMatch(message);
}
