// Mints the bearer token for the jwt_authn benchmark: a fresh RSA-2048 key, its JWKS and
// one RS256 JWT valid for a day. Prints {"jwks": "...", "token": "..."}. Node built-ins only.
// Usage: node bench/mint_jwt.mjs ISSUER AUDIENCE
import crypto from 'node:crypto';

const [issuer, audience] = process.argv.slice(2);
const { privateKey, publicKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
const jwk = { ...publicKey.export({ format: 'jwk' }), kid: 'bench', alg: 'RS256', use: 'sig' };
const b64 = (v) => Buffer.from(JSON.stringify(v)).toString('base64url');
const now = Math.floor(Date.now() / 1000);
const input = `${b64({ alg: 'RS256', typ: 'JWT', kid: 'bench' })}.${b64({
  iss: issuer, aud: audience, sub: 'john', email: 'john@example.com', iat: now, exp: now + 86400,
})}`;
const sig = crypto.sign('sha256', Buffer.from(input), privateKey).toString('base64url');
console.log(JSON.stringify({ jwks: JSON.stringify({ keys: [jwk] }), token: `${input}.${sig}` }));
