import type { SimDialect } from './dialect.ts';
import { llamacpp } from './llamacpp.ts';
import { ollama } from './ollama.ts';
import { sglang } from './sglang.ts';
import { tgi } from './tgi.ts';
import { vllm } from './vllm.ts';

/** The engines the simulator can speak (`sluice sim --dialect`). */
export const SIM_DIALECTS = { vllm, sglang, llamacpp, ollama, tgi } as const satisfies Record<string, SimDialect>;
export type SimDialectName = keyof typeof SIM_DIALECTS;
export const SIM_DIALECT_NAMES = Object.keys(SIM_DIALECTS) as SimDialectName[];

export function isSimDialectName(name: string): name is SimDialectName {
  return Object.hasOwn(SIM_DIALECTS, name);
}
