// SPDX-License-Identifier: Apache-2.0
//
// Throw-away certificates for the HTTPS upstream tests, made with the `openssl` CLI at test time
// (no key is ever committed). ECDSA P-256, valid from now for 2 days.
//
//   import { makeTestCA } from '../upstream/test-ca.mjs';
//   const pki = makeTestCA(dir);   // dir optional: a new temp dir when omitted
//   startUpstream({ tls: { key: pki.serverKey, cert: pki.serverCert } })
//   ... the gateway trusts pki.caCert; pki.otherCaCert is a CA that did not sign the server ...
//
// Files made in dir (all paths returned, absolute):
//   ca.key / ca.crt                   the test CA
//   server.key / server.crt           leaf for 127.0.0.1 and localhost (SAN IP:127.0.0.1, DNS:localhost), signed by ca
//   wrong-host.key / wrong-host.crt   leaf signed by ca for DNS:wrong-host.invalid only (hostname mismatch)
//   other-ca.key / other-ca.crt       a second, unrelated CA (trusting it alone must fail against server.crt)
//   bundle.crt                        server.crt followed by ca.crt

import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

function openssl(args, cwd) {
  try {
    return execFileSync('openssl', args, { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (e) {
    const err = e.code === 'ENOENT' ? 'the openssl CLI is not installed (scripts/install-deps)' : String(e.stderr || e.message);
    throw new Error(`openssl ${args.join(' ')}: ${err}`);
  }
}

const EC = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];

function makeCA(dir, name, cn) {
  const key = path.join(dir, `${name}.key`);
  const cert = path.join(dir, `${name}.crt`);
  openssl(
    [
      'req', '-x509', ...EC, '-keyout', key, '-out', cert, '-days', '2', '-subj', `/O=keygate tests/CN=${cn}`,
      '-addext', 'basicConstraints=critical,CA:TRUE',
      '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
      '-addext', 'subjectKeyIdentifier=hash',
    ],
    dir,
  );
  return { key, cert };
}

function makeLeaf(dir, name, ca, san) {
  const key = path.join(dir, `${name}.key`);
  const csr = path.join(dir, `${name}.csr`);
  const cert = path.join(dir, `${name}.crt`);
  const ext = path.join(dir, `${name}.ext`);
  openssl(['req', '-new', ...EC, '-keyout', key, '-out', csr, '-subj', `/O=keygate tests/CN=${name}`], dir);
  fs.writeFileSync(
    ext,
    [
      'basicConstraints=critical,CA:FALSE',
      'keyUsage=critical,digitalSignature',
      'extendedKeyUsage=serverAuth',
      `subjectAltName=${san}`,
      'authorityKeyIdentifier=keyid',
      '',
    ].join('\n'),
  );
  openssl(
    ['x509', '-req', '-in', csr, '-CA', ca.cert, '-CAkey', ca.key, '-CAcreateserial', '-out', cert, '-days', '2',
      '-sha256', '-extfile', ext],
    dir,
  );
  fs.rmSync(csr);
  fs.rmSync(ext);
  return { key, cert };
}

/**
 * Make a test PKI in `dir` (created if missing; a fresh temp dir when omitted). Synchronous
 * (awaiting it is harmless). Throws with openssl's message if the CLI is missing or fails.
 * @returns {{dir, caKey, caCert, serverKey, serverCert, wrongHostKey, wrongHostCert,
 *            otherCaKey, otherCaCert, bundle}} absolute paths
 */
export function makeTestCA(dir) {
  dir = path.resolve(dir ?? fs.mkdtempSync(path.join(os.tmpdir(), 'keygate-ca-')));
  fs.mkdirSync(dir, { recursive: true });
  const ca = makeCA(dir, 'ca', 'keygate test CA');
  const server = makeLeaf(dir, 'server', ca, 'IP:127.0.0.1,DNS:localhost');
  const wrongHost = makeLeaf(dir, 'wrong-host', ca, 'DNS:wrong-host.invalid');
  const other = makeCA(dir, 'other-ca', 'keygate unrelated CA');
  const bundle = path.join(dir, 'bundle.crt');
  fs.writeFileSync(bundle, Buffer.concat([fs.readFileSync(server.cert), fs.readFileSync(ca.cert)]));
  return {
    dir,
    caKey: ca.key,
    caCert: ca.cert,
    serverKey: server.key,
    serverCert: server.cert,
    wrongHostKey: wrongHost.key,
    wrongHostCert: wrongHost.cert,
    otherCaKey: other.key,
    otherCaCert: other.cert,
    bundle,
  };
}
