// Demo application standing for the user's app behind wasm-oauth2-proxy.
// It holds no auth logic: it trusts the X-Auth-Request-* headers the filter
// sets. Also the upstream echo server of the end-to-end tests.
//
//   GET /         HTML "Hello, <email>" (from X-Auth-Request-Email)
//   GET /headers  JSON of the request headers received
//   anything else JSON {"method", "path", "headers"}
//
// Environment: APP_PORT (default 8080), APP_HOST (default 127.0.0.1).
// No dependencies.

'use strict';

const http = require('node:http');

const PORT = Number.parseInt(process.env.APP_PORT || '8080', 10);
const HOST = process.env.APP_HOST || '127.0.0.1';

function esc(s) {
  return String(s)
    .replaceAll('&', '&amp;')
    .replaceAll('<', '&lt;')
    .replaceAll('>', '&gt;')
    .replaceAll('"', '&quot;')
    .replaceAll("'", '&#39;');
}

/** Lowercase name -> value; repeated headers joined with ", ". */
function headerObject(rawHeaders) {
  const out = {};
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    const name = rawHeaders[i].toLowerCase();
    const value = rawHeaders[i + 1];
    out[name] = Object.hasOwn(out, name) ? `${out[name]}, ${value}` : value;
  }
  return out;
}

function rawPairs(rawHeaders) {
  const pairs = [];
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    pairs.push([rawHeaders[i], rawHeaders[i + 1]]);
  }
  return pairs;
}

function sendJson(res, status, value) {
  const body = `${JSON.stringify(value, null, 2)}\n`;
  res.writeHead(status, {
    'Content-Type': 'application/json; charset=utf-8',
    'Content-Length': Buffer.byteLength(body),
    'Cache-Control': 'no-store',
  });
  res.end(body);
}

function sendHtml(res, status, html) {
  res.writeHead(status, {
    'Content-Type': 'text/html; charset=utf-8',
    'Content-Length': Buffer.byteLength(html),
    'Cache-Control': 'no-store',
  });
  res.end(html);
}

/** The claims of a JWT, read without checking it (display only: the filter checked it). */
function jwtClaims(token) {
  try {
    const payload = String(token || '').split('.')[1];
    return payload ? JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')) : undefined;
  } catch {
    return undefined;
  }
}

/** When the token the filter passed in Authorization was issued and expires. */
function tokenLifetime(headers) {
  const claims = jwtClaims((headers.authorization || '').replace(/^Bearer\s+/i, ''));
  if (!claims || !Number.isFinite(claims.exp)) return '';
  const now = Math.floor(Date.now() / 1000);
  const at = (t) => new Date(t * 1000).toISOString().slice(11, 19);
  return `<p id="token">The token in <code>Authorization</code> was issued at <code>${esc(at(claims.iat))}</code>
and expires at <code>${esc(at(claims.exp))}</code> UTC (in ${esc(claims.exp - now)} s).
Reload after it expires: the filter refreshes the session first, so the app never sees an expired token.</p>`;
}

function helloPage(headers) {
  const email = headers['x-auth-request-email'];
  const user = headers['x-auth-request-preferred-username'] || headers['x-auth-request-user'];
  const groups = headers['x-auth-request-groups'];
  const who = email ? esc(email) : 'anonymous';
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Demo app</title>
<style>body{font-family:system-ui,sans-serif;max-width:40rem;margin:4rem auto;padding:0 1rem;color:#222}</style>
</head>
<body>
<h1>Hello, ${who}</h1>
${user ? `<p>User: <code>${esc(user)}</code></p>` : ''}
${groups ? `<p>Groups: <code>${esc(groups)}</code></p>` : ''}
${tokenLifetime(headers)}
<p>This page is served by the demo app; the wasm-oauth2-proxy filter in Envoy logged you in and passed your identity in <code>X-Auth-Request-*</code> headers.</p>
<ul>
<li><a href="/headers">Request headers the app received</a></li>
<li><a href="/oauth2/sign_out">Sign out</a></li>
</ul>
</body>
</html>
`;
}

// Identity headers for a user in many groups (and the ID token in Authorization) pass
// Node's 16 KiB default header limit; Envoy already bounds them.
const server = http.createServer({ maxHeaderSize: 256 * 1024 }, (req, res) => {
  // Drain any request body; the echo only reports method, path and headers.
  req.resume();
  req.on('end', () => {
    const headers = headerObject(req.rawHeaders);
    const path = req.url || '/';
    const pathname = path.split('?')[0];
    if (req.method === 'GET' && pathname === '/') {
      sendHtml(res, 200, helloPage(headers));
    } else if (req.method === 'GET' && pathname === '/headers') {
      sendJson(res, 200, { ...headers, _raw: rawPairs(req.rawHeaders) });
    } else {
      sendJson(res, 200, { method: req.method, path, headers });
    }
  });
});

// Longer than Envoy keeps an idle upstream connection (60 s in bench/envoy_configs.py). With
// Node's 5 s default the app closes connections Envoy still holds (an hour, by Envoy's
// default), and a request Envoy sends on one as the app closes it is answered 503 by Envoy.
server.keepAliveTimeout = 65_000;

server.on('error', (err) => {
  console.error(`app: ${err.message}`);
  process.exit(1);
});

server.listen(PORT, HOST, () => {
  console.log(`app listening on http://${HOST}:${PORT}`);
});

function shutdown() {
  server.close();
  server.closeAllConnections?.();
  process.exit(0);
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
