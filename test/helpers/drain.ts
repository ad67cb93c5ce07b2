import type { StreamWriter } from '../../src/relay/writer.ts';

/** Counts a writer's `onDrain` calls from now on; `drained` settles at the first. */
export function watchDrain(writer: Pick<StreamWriter, 'onDrain'>): { count(): number; drained: Promise<void> } {
  let n = 0;
  const drained = new Promise<void>((resolve) =>
    writer.onDrain(() => {
      n++;
      resolve();
    }),
  );
  return { count: () => n, drained };
}
