// A StrykerJS ignore-plugin (stryker.config.mjs: ignorers ['error-messages']): the message text
// of a thrown error is not mutated. Mutating it ("" or a dropped template) only tests the wording;
// the error tests match the messages, and what decides behaviour (the condition, the error type,
// the error code) is still mutated. Matched: the message argument of the project's error helpers
// in ts/errors.ts (typeError(message, code?), rangeError(message, code?), error(code, message))
// when it is a string or a template.
import { PluginKind, declareValuePlugin } from '@stryker-mutator/api/plugin';

/** each helper's message argument */
const messageArgument = new Map([
  ['typeError', 0],
  ['rangeError', 0],
  ['error', 1],
]);

export const strykerPlugins = [
  declareValuePlugin(PluginKind.Ignore, 'error-messages', {
    shouldIgnore(path) {
      if (!(path.isStringLiteral() || path.isTemplateLiteral())) return undefined;
      const call = path.parentPath;
      if (!call?.isCallExpression() || !call.get('callee').isIdentifier()) return undefined;
      const index = messageArgument.get(call.node.callee.name);
      return index !== undefined && call.node.arguments[index] === path.node ? 'the text of an error message' : undefined;
    },
  }),
];
