/**
 * Keeps the gateway's upstream credentials out of what clients and logs see (issue 12): engines and the proxies in
 * front of them echo request headers in error bodies (FastAPI's validation errors, debug pages, "invalid header"
 * messages), and an upstream URL may carry `user:password@`.
 */

/** What a secret is replaced with. Plain ASCII without quotes, so JSON stays valid wherever it lands. */
export const REDACTED = '[redacted]';

/**
 * Literal secrets shorter than this are not searched for: replacing every "abc" in a message would mangle it and
 * show where the secret was (which tells the secret). The header patterns below still catch such a key where it is
 * echoed as a header; a key this short is guessable anyway.
 */
const MIN_LITERAL = 4;

/**
 * A credential header echoed as text: `Authorization: Bearer x`, JSON `"authorization": "Basic x"`, Python's
 * `'authorization': 'x'`, form `authorization=x`. The value runs to the closing quote, the line end, or a separator.
 * Header names are case-insensitive (RFC 9110 §5.1); `api-key` is Azure's, `x-api-key` Anthropic's and many
 * proxies'.
 */
const HEADER_ECHO = /\b((?:proxy-)?authorization|x-api-key|api-key)(\\?["']?\s*[:=]\s*\\?["']?)([^"'\\\r\n,;}\]]+)/gi;
/** A bearer token anywhere (RFC 6750's b64token characters), e.g. in a message that quotes the header value alone. */
const BEARER = /\b(bearer)(\s+)[A-Za-z0-9\-._~+/]+=*/gi;
/** Userinfo in a URL (`scheme://user:password@host`), e.g. a proxy's message naming the URL it was asked for. The
 * scheme's length is bounded so that a long run of letters costs linear time, not quadratic (the text is an
 * upstream's, and may be hostile). */
const URL_USERINFO = /\b([a-z][a-z0-9+.-]{0,15}:\/\/)[^/?#@\s"'<>]*@/gi;

/**
 * Removes upstream credentials from text relayed from an upstream (error bodies and messages, in-band error frames,
 * discovery failures shown on /ready): every configured secret (as written, JSON-escaped and URL-encoded), every
 * credential header's value, every `Bearer` token and the userinfo of every URL. Meant for messages (bounded, error paths only): it runs a few
 * regular expressions over the whole text.
 */
export function redactSecrets(text: string, secrets: readonly string[] = []): string {
  let out = text;
  for (const secret of secrets) {
    if (secret.length < MIN_LITERAL) continue;
    for (const form of secretForms(secret)) if (out.includes(form)) out = out.split(form).join(REDACTED);
  }
  return out.replace(HEADER_ECHO, `$1$2${REDACTED}`).replace(BEARER, `$1$2${REDACTED}`).replace(URL_USERINFO, '$1');
}

/**
 * Only the configured secrets, as written: a cheap pass (one `includes` per secret when nothing matches) for whole
 * answers that are relayed as they are, such as a non-streamed completion, where the header patterns could rewrite
 * generated text.
 */
export function redactLiteralSecrets(text: string, secrets: readonly string[]): string {
  let out = text;
  for (const secret of secrets) {
    if (secret.length < MIN_LITERAL) continue;
    for (const form of secretForms(secret)) if (out.includes(form)) out = out.split(form).join(REDACTED);
  }
  return out;
}

/** A secret as an echo may spell it: as is, inside a JSON string, percent-encoded. */
function secretForms(secret: string): string[] {
  const forms = new Set([secret, JSON.stringify(secret).slice(1, -1), encodeURIComponent(secret)]);
  return [...forms];
}

/**
 * A URL without its userinfo (`http://user:secret@host/v1` → `http://host/v1`), for start-up lines, logs and
 * error messages. Text that is not a URL is returned with anything that looks like userinfo removed.
 */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.username === '' && u.password === '') return url;
    u.username = '';
    u.password = '';
    return u.toString();
  } catch {
    return url.replace(/\/\/[^/@\s]*@/g, '//');
  }
}
