// What the validators' command lines share: the closing summary and exit status, and running main()
// only when the script is the program (they are imported by each other and by the sandbox too).
import { realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/**
 * Prints "N passed, M failed" (the last stdout line every tool promises) and returns the exit status:
 * 0 all valid, 1 some invalid, 2 an I/O error or nothing found in the input (`what`, e.g. "bundle").
 */
export function finishRun(prog, passed, failed, ioError, what = 'bundle', warn = console.error) {
  if (passed + failed === 0 && !ioError) warn(`${prog}: no ${what} found in the input`);
  console.log(`${passed} passed, ${failed} failed`);
  if (ioError || passed + failed === 0) return 2;
  return failed > 0 ? 1 : 0;
}

/** Runs main(argv) as the process's exit code when the module at `moduleUrl` is the script node was given. */
export function runIfMain(moduleUrl, main) {
  let direct = false;
  try {
    direct = !!process.argv[1] && realpathSync(process.argv[1]) === realpathSync(fileURLToPath(moduleUrl));
  } catch {
    direct = false;
  }
  if (direct) process.exitCode = main(process.argv.slice(2));
}
