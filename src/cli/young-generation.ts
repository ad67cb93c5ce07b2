import { registerHooks } from 'node:module';
import { getHeapSpaceStatistics, setFlagsFromString } from 'node:v8';

/**
 * The young generation `sluice serve` runs with: 2 × 8 MiB (both semi-spaces together, as V8 counts `new_space`).
 * Larger, and every page of it stays resident once a burst of new streams has filled it: memory per open stream went
 * 24.5 → 35–41 KiB at 2 × 16 MiB (docs/performance.md, findings 10 and 12). Smaller costs minor GCs (2 × 1 MiB:
 * +7% CPU per chunk).
 */
const YOUNG_GENERATION_BYTES = 16 * 1024 * 1024;

let frozen = false;
let hooks: { deregister(): void } | undefined;

/** An operator who sizes the young generation with Node flags is left alone. */
function operatorSizesIt(): boolean {
  const flags = `${process.execArgv.join(' ')} ${process.env['NODE_OPTIONS'] ?? ''}`;
  return /--[\w-]*semi[-_]space/.test(flags);
}

function newSpaceBytes(): number {
  for (const s of getHeapSpaceStatistics()) if (s.space_name === 'new_space') return s.space_size;
  return 0;
}

/**
 * Stops the young generation from growing from now on. V8 doubles it whenever more bytes survived its scavenges than
 * it holds; with growth factor 1 the doubling leaves it as it is (V8 reads the factor at each growth, and only the
 * command-line form is clamped to at least 2; `--max-semi-space-size` set at run time does nothing).
 */
export function freezeYoungGeneration(): void {
  if (frozen || operatorSizesIt()) return;
  frozen = true;
  hooks?.deregister();
  hooks = undefined;
  setFlagsFromString('--semi-space-growth-factor=1');
}

/**
 * Called by bin/sluice.mjs before it loads the CLI for `serve`. Loading the CLI's ~550 modules is what grows the young
 * generation from 1 MiB to its working size, and how far depends on how much code there is: at the console's merge
 * one more doubling, to 2 × 16 MiB, came before `serve` could freeze it. So freeze it as the modules load, as soon as
 * it has reached 2 × 8 MiB (checked at each import a module makes; a module allocates far less than another doubling
 * needs). If loading ends below that, `serve` freezes it where it is, as before.
 */
export function capYoungGenerationWhileLoading(): void {
  if (frozen || operatorSizesIt()) return;
  if (newSpaceBytes() >= YOUNG_GENERATION_BYTES) return freezeYoungGeneration();
  hooks = registerHooks({
    // A resolve hook, not a load hook: with a load hook registered Node's loader kept 3.5 MB more of the modules'
    // source alive.
    resolve(specifier, context, nextResolve) {
      if (newSpaceBytes() >= YOUNG_GENERATION_BYTES) freezeYoungGeneration();
      return nextResolve(specifier, context);
    },
  });
}
