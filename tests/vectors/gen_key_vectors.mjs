// Generates key_format.json: SPEC §2 test vectors computed by an implementation written
// separately from the C code (CRC32 from its polynomial, base62 by division, SHA-256 from
// node:crypto). Run: node tests/vectors/gen_key_vectors.mjs > tests/vectors/key_format.json
import { createHash } from 'node:crypto';

const ALPHABET = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';

function crc32(str) {
  let crc = 0xffffffff;
  for (const byte of Buffer.from(str, 'latin1')) {
    crc ^= byte;
    for (let k = 0; k < 8; k++) crc = crc & 1 ? (crc >>> 1) ^ 0xedb88320 : crc >>> 1;
  }
  return (crc ^ 0xffffffff) >>> 0;
}

function base62(n, width) {
  let out = '';
  do {
    out = ALPHABET[n % 62] + out;
    n = Math.floor(n / 62);
  } while (n > 0);
  return out.padStart(width, '0');
}

// Deterministic "random" parts so the file is reproducible.
function pseudoRandom(seed) {
  let x = seed;
  let s = '';
  for (let i = 0; i < 32; i++) {
    x = (x * 1103515245 + 12345) % 2147483648;
    s += ALPHABET[x % 62];
  }
  return s;
}

const cases = [
  ['kg', 'live', '0'.repeat(32)],
  ['kg', 'test', 'z'.repeat(32)],
  ['kg', 'gk', 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdef'],
  ['kg', 'admin', '0123456789abcdefghijklmnopqrstuv'],
  ['kg', 'eph', pseudoRandom(7)],
  ['acme', 'live', pseudoRandom(42)],
  ['x1', 'test', pseudoRandom(99)],
  ['abcdefghijklmnop', 'live', pseudoRandom(2026)],
];

const vectors = cases.map(([brand, kind, random]) => {
  const checksum = base62(crc32(random), 6);
  const secret = `${brand}_${kind}_${random}${checksum}`;
  return {
    brand, kind, random, checksum, secret,
    crc32: crc32(random),
    prefix: secret.slice(0, 12),
    last4: secret.slice(-4),
    sha256: createHash('sha256').update(secret).digest('hex'),
  };
});

process.stdout.write(JSON.stringify({
  about: 'SPEC §2 key format vectors; regenerate with node tests/vectors/gen_key_vectors.mjs',
  vectors,
}, null, 2) + '\n');
