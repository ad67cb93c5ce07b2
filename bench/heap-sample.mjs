// Preload (`node --import bench/heap-sample.mjs ...`) for `npm run bench -- --heap-sample DIR`: samples what the
// process allocates during the measurement window, short-lived objects included (`--heap-prof` keeps only what is
// still alive when it stops, which hides the per-chunk garbage that young-generation GC pays for), and writes a
// .heapprofile that bench/heapprofile.ts summarizes. SLUICE_HEAP_SAMPLE is set by bench/run.ts for each process:
// {"dir", "name", "startS", "stopS"} (seconds after this process started).
import { Session } from 'node:inspector';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const spec = JSON.parse(process.env.SLUICE_HEAP_SAMPLE ?? 'null');
if (spec !== null) {
  const session = new Session();
  session.connect();
  const startSampling = () =>
    session.post('HeapProfiler.startSampling', { samplingInterval: 4096, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: true });
  const stopSampling = () =>
    session.post('HeapProfiler.stopSampling', (err, result) => {
      if (err) return;
      mkdirSync(spec.dir, { recursive: true });
      writeFileSync(join(spec.dir, `${spec.name}.heapprofile`), JSON.stringify({ ...result.profile, sampledSeconds: spec.stopS - spec.startS }));
    });
  setTimeout(() => {
    startSampling();
    setTimeout(stopSampling, (spec.stopS - spec.startS) * 1000).unref();
  }, spec.startS * 1000).unref();
}
