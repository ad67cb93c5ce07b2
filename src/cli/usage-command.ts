import { parseArgs } from 'node:util';
import { UsageError } from './args.ts';
import { dateOption, openStateFor, STATE_HELP, STATE_OPTIONS } from './state-option.ts';
import { formatTable } from './keys-command.ts';
import { outcomeColumns, usageCsv, type UsageGrouping } from '../ledger/usage-report.ts';
import { GROUPINGS, usageJson, usageReport } from '../admin/key-operations.ts';

export const USAGE_HELP = `Usage: sluice usage [options]

The usage ledger: one record per request, aborted and failed ones included (docs/keys.md), summed per group.

  --key NAME        only this key's requests
  --model M         only this model's
  --since DATE      from this date (2027-01-31 is UTC midnight, or 2027-01-31T12:00:00Z), inclusive
  --until DATE      up to this date, exclusive
  --by key|model|day  how to group (default key; days are UTC)
  --json            JSON: one object per group, with its outcomes
  --csv             CSV with a header line, one column per outcome
${STATE_HELP}
  --config FILE     read state.url from this config file`;

/** `sluice usage`; resolves to the exit code. */
export async function usageCommand(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      ...STATE_OPTIONS,
      key: { type: 'string' },
      model: { type: 'string' },
      since: { type: 'string' },
      until: { type: 'string' },
      by: { type: 'string' },
      json: { type: 'boolean' },
      csv: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  if (values.help) {
    console.log(USAGE_HELP);
    return 0;
  }
  const by = (values.by ?? 'key') as UsageGrouping;
  if (!GROUPINGS.includes(by)) throw new UsageError(`--by: '${values.by}' is not one of key, model, day`);
  if (values.json && values.csv) throw new UsageError('--json and --csv: choose one');
  const filter = {
    key: values.key,
    model: values.model,
    since: values.since === undefined ? undefined : dateOption('--since', values.since),
    until: values.until === undefined ? undefined : dateOption('--until', values.until),
  };
  const store = await openStateFor(values, process.env);
  try {
    const rows = await usageReport(store, filter, by);
    if (values.json) console.log(JSON.stringify(usageJson(rows, by), null, 2));
    else if (values.csv) process.stdout.write(usageCsv(rows, by));
    else {
      const outcomes = outcomeColumns(rows);
      const header = [by.toUpperCase(), 'REQUESTS', 'PROMPT', 'COMPLETION', 'COUNTED', ...outcomes.map((o) => o.toUpperCase())];
      console.log(formatTable(header, rows.map((r) => [r.group, String(r.requests), String(r.prompt_tokens), String(r.completion_tokens), String(r.counted), ...outcomes.map((o) => String(r.outcomes[o] ?? 0))])));
    }
  } finally {
    await store.close();
  }
  return 0;
}
