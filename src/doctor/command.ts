import { readFile, writeFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { UsageError } from '../cli/args.ts';
import { DoctorError } from './doctor-error.ts';
import type { Endpoint } from './recording.ts';
import { renderHtml } from './render-html.ts';
import { renderText } from './render-text.ts';
import { reportToJson } from './report-json.ts';
import { runDoctor } from './run-doctor.ts';

export const DOCTOR_HELP = `Usage: sluice doctor URL [options]

Diagnoses a streaming OpenAI-compatible endpoint (vLLM, a proxy in front of it, Sluice, a SaaS): does it really
stream, which hop buffers, cuts or rewrites the stream, and what to change. URL is the base URL ending in /v1,
like the SDKs' baseURL.

Options:
  --model M            model to ask (default: the first from GET /models)
  --key K              API key, sent as Authorization: Bearer K
  --header 'N: v'      extra request header, repeatable
  --completions        also stream POST /completions
  --responses          also stream POST /responses
  --compare URL2       run the same probe against URL2 (say the engine directly) and attribute the difference
                       to the hops between the two
  --origin O           check that a browser page on origin O may call the API and read the stream (CORS)
  --idle SECONDS       ask for SECONDS of silence before the first token (Sluice or its simulator only) and see
                       whether a hop cuts the stream and whether heartbeats arrive
  --body JSON          fields merged into every request body, e.g. '{"max_tokens":200}'
  --timeout SECONDS    give up on a probe after this long (default 120)
  --h2c                speak cleartext HTTP/2 (prior knowledge) to an http:// URL; https:// URLs use HTTP/2
                       when the server offers it by ALPN
  --cacert FILE        also trust the CA certificate(s) in this PEM file for https:// (a private CA)
  --json               print the report as JSON (for CI)
  --html FILE          also write an HTML report with an SVG timeline
  --verbose            show the evidence of passing checks too

Exit code: 0 all checks pass, 1 warnings only, 2 a check failed or the endpoint could not be probed.
When the target is Sluice or its simulator, the doctor asks for timestamped tokens at a known cadence and
measures the delay each hop adds exactly. See docs/doctor.md.`;

function parseHeader(raw: string): [string, string] {
  const colon = raw.indexOf(':');
  const name = colon > 0 ? raw.slice(0, colon).trim() : '';
  if (!/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(name)) throw new UsageError(`--header: '${raw}' is not 'Name: value'`);
  return [name, raw.slice(colon + 1).trim()];
}

function positiveNumber(flag: string, raw: string | undefined): number | null {
  if (raw === undefined) return null;
  const n = Number(raw);
  if (!Number.isFinite(n) || n <= 0) throw new UsageError(`${flag}: '${raw}' is not a positive number of seconds`);
  return n;
}

/** `sluice doctor`: resolves to the exit code. */
export async function doctorCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      model: { type: 'string' },
      key: { type: 'string' },
      header: { type: 'string', multiple: true },
      completions: { type: 'boolean' },
      responses: { type: 'boolean' },
      compare: { type: 'string' },
      origin: { type: 'string' },
      idle: { type: 'string' },
      body: { type: 'string' },
      timeout: { type: 'string' },
      h2c: { type: 'boolean' },
      cacert: { type: 'string' },
      json: { type: 'boolean' },
      html: { type: 'string' },
      verbose: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  if (values.help) {
    console.log(DOCTOR_HELP);
    return 0;
  }
  if (positionals.length !== 1) throw new UsageError(positionals.length === 0 ? 'give the URL to diagnose, e.g. http://localhost:8000/v1' : `one URL only (got ${positionals.join(' ')}); use --compare for a second`);
  let body: Record<string, unknown> = {};
  if (values.body !== undefined) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(values.body);
    } catch {
      parsed = null;
    }
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new UsageError(`--body: '${values.body}' is not a JSON object`);
    body = parsed as Record<string, unknown>;
  }
  const endpoints: Endpoint[] = ['chat'];
  if (values.completions) endpoints.push('completions');
  if (values.responses) endpoints.push('responses');
  const timeout = positiveNumber('--timeout', values.timeout);
  let ca: Buffer | undefined;
  if (values.cacert !== undefined) {
    try {
      ca = await readFile(values.cacert);
    } catch (err) {
      throw new UsageError(`--cacert: cannot read '${values.cacert}': ${(err as Error).message}`);
    }
  }
  const json = values.json === true;
  const showProgress = !json && process.stderr.isTTY === true;

  try {
    const report = await runDoctor({
      url: positionals[0] as string,
      model: values.model ?? null,
      key: values.key ?? null,
      headers: (values.header ?? []).map(parseHeader),
      endpoints,
      compare: values.compare ?? null,
      origin: values.origin ?? null,
      idleSeconds: positiveNumber('--idle', values.idle),
      body,
      ...(timeout !== null ? { timeoutMs: timeout * 1000 } : {}),
      ...(values.h2c === true ? { h2c: true } : {}),
      ...(ca !== undefined ? { ca } : {}),
      ...(showProgress ? { onProgress: (m: string) => process.stderr.write(`\x1b[2m${m}\x1b[0m\n`) } : {}),
    });
    if (values.html !== undefined) await writeFile(values.html, renderHtml(report));
    if (json) process.stdout.write(`${JSON.stringify(reportToJson(report), null, 2)}\n`);
    else {
      const color = process.stdout.isTTY === true && process.env['NO_COLOR'] === undefined;
      process.stdout.write(renderText(report, { color, verbose: values.verbose === true }));
      if (values.html !== undefined) process.stdout.write(`HTML report: ${values.html}\n`);
    }
    return report.exitCode;
  } catch (err) {
    if (!(err instanceof DoctorError)) throw err;
    if (json) process.stdout.write(`${JSON.stringify({ tool: 'sluice doctor', status: 'error', exitCode: 2, error: err.toJSON() }, null, 2)}\n`);
    console.error(`sluice doctor: ${err.message} [${err.code}]`);
    return 2;
  }
}
