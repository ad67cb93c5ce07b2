import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

export interface TestCert {
  certFile: string;
  keyFile: string;
  /** The certificate (PEM), for clients' `ca`. */
  cert: Buffer;
}

let made: Promise<TestCert> | undefined;

/**
 * A self-signed certificate for `localhost` and 127.0.0.1, made with openssl once per test process in a temporary
 * directory (removed at exit). Clients trust it by passing `cert` as their CA.
 */
export function testCert(): Promise<TestCert> {
  made ??= (async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sluice-tls-'));
    process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
    const certFile = join(dir, 'cert.pem');
    const keyFile = join(dir, 'key.pem');
    await promisify(execFile)('openssl', [
      'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '2',
      '-keyout', keyFile, '-out', certFile, '-subj', '/CN=localhost',
      '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1',
    ]);
    return { certFile, keyFile, cert: readFileSync(certFile) };
  })();
  return made;
}
