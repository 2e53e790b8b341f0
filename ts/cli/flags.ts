// One command-line convention for `npm start` and every benchmark script, on node:util's
// parseArgs: --kebab-case flags, a value as `--flag value` or `--flag=value`, switches without
// a value. An unknown flag is an error that names it and the known ones; so is a switch given a
// value or an argument that is not a flag. A value flag given no value comes back with the value
// undefined, so that the caller's message can say what the flag needs.
import { parseArgs as parseNodeArgs } from 'node:util';
import { error } from '../errors';

/** The flags a program takes, by name without the leading '--': whether each takes a value. */
export type FlagSpec = Readonly<Record<string, 'value' | 'switch'>>;

/** One flag as given, in the order given: its name with '--', and its value (switches: undefined). */
export interface GivenFlag {
  flag: string;
  value: string | undefined;
}

/** The flags in `argv`, in order, checked against `spec` (see the file's header). */
export function readFlags(argv: readonly string[], spec: FlagSpec, help = 'try --help'): GivenFlag[] {
  const options = Object.fromEntries(
    Object.entries(spec).map(([name, kind]) => [name, { type: kind === 'value' ? ('string' as const) : ('boolean' as const) }]),
  );
  // Not strict: strict mode refuses values that start with a dash (`--lr -1` would not reach the
  // range check that names the flag), and its messages do not list the known flags.
  const { tokens } = parseNodeArgs({ args: [...argv], options, strict: false, allowPositionals: true, tokens: true });
  const known = Object.keys(spec)
    .map((name) => `--${name}`)
    .join(', ');
  const given: GivenFlag[] = [];
  for (const t of tokens) {
    if (t.kind === 'positional')
      throw error('ERR_SYNTHGRAD_CLI', `unexpected argument '${t.value}': flags are --name value or --name=value (${help})`);
    if (t.kind === 'option-terminator') continue;
    const kind = Object.prototype.hasOwnProperty.call(spec, t.name) ? spec[t.name] : undefined;
    if (kind === undefined || !t.rawName.startsWith('--'))
      throw error('ERR_SYNTHGRAD_CLI', `unknown option '${t.rawName}' (known: ${known}; ${help})`);
    if (kind === 'switch' && t.value !== undefined) throw error('ERR_SYNTHGRAD_CLI', `${t.rawName} takes no value, got '${t.value}'`);
    given.push({ flag: t.rawName, value: t.value });
  }
  return given;
}

/** A numeric flag's value; anything else is an error that names the flag. */
export function numberFlag(flag: string, value: string | undefined): number {
  const v = Number(value);
  if (value === undefined || value === '' || !Number.isFinite(v))
    throw error('ERR_SYNTHGRAD_CLI', `${flag} needs a number, got '${value ?? ''}'`);
  return v;
}

/** A flag's value in flagValues' result: a switch's is a boolean, a value flag's a string. */
export type FlagValues<D> = { [K in keyof D]: D[K] extends boolean ? boolean : string };

/**
 * The flags of a script that takes each at most once (the benchmarks): `defaults` names every
 * flag it takes (without '--'), each with its default: a string for a flag that takes a value,
 * false for a switch. Returns the values given (the last, if one is given twice), else the
 * defaults; a value flag given no value is an error that names it.
 */
export function flagValues<D extends Record<string, string | boolean>>(
  argv: readonly string[],
  defaults: D,
  help = "see the script's header",
): FlagValues<D> {
  const spec: FlagSpec = Object.fromEntries(
    Object.entries(defaults).map(([name, v]) => [name, typeof v === 'boolean' ? 'switch' : 'value']),
  );
  const values: Record<string, string | boolean> = { ...defaults };
  for (const { flag, value } of readFlags(argv, spec, help)) {
    const name = flag.slice(2);
    if (spec[name] === 'switch') values[name] = true;
    else if (value === undefined) throw error('ERR_SYNTHGRAD_CLI', `${flag} needs a value`);
    else values[name] = value;
  }
  return values as FlagValues<D>;
}
