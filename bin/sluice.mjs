#!/usr/bin/env node
// Entry point: Node ≥ 24 runs the TypeScript sources directly (erasable syntax only, no build step).
const [major] = process.versions.node.split('.').map(Number);
if (major < 24) {
  console.error(
    `sluice needs Node.js 24 or newer (this is ${process.version}). In a checkout, \`npm install\` puts Node 24 in ` +
      'node_modules/.bin; run sluice through `npx sluice ...` or `npm start` so that it is used.',
  );
  process.exit(1);
}
if (process.argv[2] === 'serve') {
  // Before the CLI's modules load: loading them is what sizes V8's young generation (src/cli/young-generation.ts).
  const { capYoungGenerationWhileLoading } = await import('../src/cli/young-generation.ts');
  capYoungGenerationWhileLoading();
}
const { main } = await import('../src/cli/main.ts');
process.exitCode = await main(process.argv.slice(2));
