// binding.gyp (the CPU-only node-gyp build) and CMakeLists.txt (the main build) compile the
// same C++ files: every .cpp of CMake's globs is in binding.gyp and binding.gyp names nothing
// else, so a file added to native/ cannot be missing from the fallback build.
import * as fs from 'fs';
import * as path from 'path';

const root = path.join(__dirname, '..');

/** The files that CMakeLists.txt's `file(GLOB VAR pattern...)` lines match, with the pattern's extension. */
function cmakeGlobbed(ext: string): string[] {
  const text = fs.readFileSync(path.join(root, 'CMakeLists.txt'), 'utf8');
  const files: string[] = [];
  for (const m of text.matchAll(/^\s*file\(GLOB\s+\w+\s+([^)]*)\)/gm)) {
    for (const pattern of m[1].trim().split(/\s+/)) {
      const g = /^([\w/.-]+)\/\*(\.\w+)$/.exec(pattern);
      if (!g) throw new Error(`CMakeLists.txt: a glob this test does not read: ${pattern}`);
      if (g[2] !== ext) continue;
      for (const name of fs.readdirSync(path.join(root, g[1]))) if (name.endsWith(ext)) files.push(`${g[1]}/${name}`);
    }
  }
  return files.sort();
}

/** Every source that binding.gyp's targets list (its comments stripped; the rest is JSON). */
function gypSources(): string[] {
  const text = fs.readFileSync(path.join(root, 'binding.gyp'), 'utf8').replace(/^\s*#.*$/gm, '');
  const gyp = JSON.parse(text) as { targets: { sources?: string[] }[] };
  return gyp.targets.flatMap((t) => t.sources ?? []).sort();
}

/** Every file with extension `ext` under `dir` (repo-relative). */
function walk(dir: string, ext: string): string[] {
  const out: string[] = [];
  for (const e of fs.readdirSync(path.join(root, dir), { withFileTypes: true })) {
    const rel = `${dir}/${e.name}`;
    if (e.isDirectory()) out.push(...walk(rel, ext));
    else if (e.name.endsWith(ext)) out.push(rel);
  }
  return out;
}

describe('build source lists', () => {
  test("binding.gyp compiles exactly the .cpp files of CMake's globs", () => {
    const cmake = cmakeGlobbed('.cpp');
    expect(cmake.length).toBeGreaterThan(10);
    expect(gypSources()).toEqual(cmake);
  });

  test('every .cpp under native/ is in both builds', () => {
    // native/mpi/ and native/nccl/ are the optional transports, separate addons (their own CMakeLists.txt).
    const all = walk('native', '.cpp')
      .filter((f) => !f.startsWith('native/mpi/') && !f.startsWith('native/nccl/'))
      .sort();
    expect(cmakeGlobbed('.cpp')).toEqual(all);
    expect(gypSources()).toEqual(all);
  });

  test('the CUDA build compiles every .cu of cuda/', () => {
    expect(cmakeGlobbed('.cu')).toEqual(walk('cuda', '.cu').sort());
  });
});
