// tests/blackbox/lib/mock.mjs: start and drive the mock upstream (a fake
// NVIDIA NIM, tests/mock-upstream.c) from a black-box test.
//
//   import { startMock } from './lib/mock.mjs';
//   const mock = await startMock({ keys: [{ key: 'nvapi-TEST-0001-xxxxxxxxxxxxxxxx', rpm: 40 }] });
//   ... point the program under test at mock.url (http://127.0.0.1:PORT/v1) ...
//   const reqs = await mock.record();   // array of entries (also reqs.requests)
//   await mock.stop();
//
// Every mock started here is killed when the process exits, even on failure.
// Per-request behaviour is chosen with request headers that the data plane
// forwards: X-Mock-Chunks, X-Mock-Interval-Ms, X-Mock-First-Delay-Ms,
// X-Mock-Latency-Ms, X-Mock-Retry-After (X-Mock-Retry-After-Form: imf, rfc850
// or asctime sends it as an HTTP-date that far ahead), X-Mock-Tool (none: answer
// text although the request has tools; NAME: call that tool with X-Mock-Tool-Args,
// then text once the messages hold a tool result — for agents such as OpenClaw)
// and X-Mock-Fault (status=CODE, hang,
// hang-first-byte, reset-after=N, close-after=N, malformed, html, drip=MS,
// slow-headers=MS, delay=MS, echo-key=CODE: an error body echoing the key
// without prefix, glued into text, in 9-12 character pieces, \u-escaped;
// sse-429=N and sse-429-openai=N: a 200 stream of N chunks, then a 429 error
// event in NIM's or OpenAI's shape) and X-Mock-Chunk-Bytes (pad each token to N
// bytes, for volume). See `tests/mock-upstream --help`.
//
// A record entry: {seq, t_ms, t_end_ms (null while running), conn (connection
// number: equal for requests on one kept-alive connection), key, method, path,
// query, model, stream, include_usage, status (null if nothing was sent),
// body_len, body (first 64 KiB), headers {lowercased: value}, response (the
// response body as sent, SSE de-chunked, first 64 KiB; null if nothing was
// sent), aborted (client left before the end), usage {prompt_tokens,
// completion_tokens, total_tokens} | null}. t_ms is the start time the sliding
// window uses, in ms since the mock started.
//
// Details worth knowing: an injected status=429 (per request or per key) does
// not count in the key's window and counts as rejected_429; X-Mock-Latency-Ms
// and --latency-ms delay only non-streaming answers (delay=MS delays all);
// streams send headers at once and content chunks from X-Mock-First-Delay-Ms
// on; reset-after/close-after=N count content chunks for streams and body
// bytes otherwise; a client that half-closes while its answer is pending is
// treated as gone (aborted). The control API answers only loopback peers, and
// stats().open_connections includes the connection asking.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const live = new Set();
process.on('exit', () => {
  for (const child of live) {
    try { child.kill('SIGKILL'); } catch { /* already gone */ }
  }
});

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Path of the mock-upstream binary (MOCK_UPSTREAM overrides SC_TOP_BUILDDIR/tests/mock-upstream). */
export function mockBinary() {
  if (process.env.MOCK_UPSTREAM) return process.env.MOCK_UPSTREAM;
  const top = process.env.SC_TOP_BUILDDIR;
  if (!top) throw new Error('SC_TOP_BUILDDIR is not set (run through make check, or set MOCK_UPSTREAM)');
  return join(top, 'tests', 'mock-upstream');
}

// One control-API call on a fresh connection (so the mock's connection
// counts are not disturbed by idle keep-alive sockets of the helper).
function control(port, method, path, body) {
  return new Promise((resolve, reject) => {
    const data = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const req = http.request({
      host: '127.0.0.1', port, method, path, agent: false,
      headers: { connection: 'close', ...(data ? { 'content-type': 'application/json', 'content-length': data.length } : {}) },
    }, (res) => {
      const parts = [];
      res.on('data', (d) => parts.push(d));
      res.on('end', () => {
        const text = Buffer.concat(parts).toString('utf8');
        if (res.statusCode !== 200) {
          reject(new Error(`mock control ${method} ${path}: ${res.statusCode} ${text}`));
          return;
        }
        try { resolve(JSON.parse(text)); } catch (e) { reject(e); }
      });
      res.on('error', reject);
    });
    req.setTimeout(30000, () => req.destroy(new Error(`mock control ${method} ${path}: timeout`)));
    req.on('error', reject);
    req.end(data);
  });
}

/**
 * Start a mock upstream on an ephemeral loopback port.
 * opts: { keys: [{key, rpm}], windowMs, chunks, intervalMs, firstDelayMs, latencyMs,
 *         anyKey (accept unknown keys), verbose (log requests to stderr), extraArgs: [] }
 * Returns { port, url, baseUrl, pid, record(), stats(), reset(), setKey(), waitRecord(), stderr(), stop() }.
 */
export async function startMock(opts = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'sc-mock-'));
  const portFile = join(dir, 'port');
  const args = ['--listen', opts.listen ?? '127.0.0.1:0', '--port-file', portFile];
  for (const k of opts.keys ?? []) args.push('--key', k.rpm ? `${k.key}:${k.rpm}` : k.key);
  if (opts.windowMs != null) args.push('--window-ms', String(opts.windowMs));
  if (opts.chunks != null) args.push('--chunks', String(opts.chunks));
  if (opts.intervalMs != null) args.push('--chunk-interval-ms', String(opts.intervalMs));
  if (opts.firstDelayMs != null) args.push('--first-chunk-delay-ms', String(opts.firstDelayMs));
  if (opts.latencyMs != null) args.push('--latency-ms', String(opts.latencyMs));
  if (opts.anyKey) args.push('--accept-any-key');
  if (!opts.verbose) args.push('--quiet');
  args.push(...(opts.extraArgs ?? []));

  const child = spawn(mockBinary(), args, { stdio: ['ignore', 'ignore', 'pipe'] });
  live.add(child);
  let errText = '';
  child.stderr.on('data', (d) => {
    errText = (errText + d.toString()).slice(-65536);
    if (opts.verbose) process.stderr.write(d);
  });
  let exited = null;
  const exitPromise = new Promise((resolve) => {
    child.on('exit', (code, signal) => {
      exited = { code, signal };
      live.delete(child);
      resolve(exited);
    });
    child.on('error', (err) => {
      exited = { code: null, signal: null, error: err };
      live.delete(child);
      resolve(exited);
    });
  });

  let port = 0;
  const deadline = Date.now() + 10000;
  for (;;) {
    if (existsSync(portFile)) {
      port = parseInt(readFileSync(portFile, 'utf8'), 10);
      if (port > 0) break;
    }
    if (exited) {
      rmSync(dir, { recursive: true, force: true });
      throw new Error(`mock-upstream exited early (${exited.error ?? exited.code ?? exited.signal}): ${errText}`);
    }
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
      throw new Error(`mock-upstream did not write its port file within 10 s: ${errText}`);
    }
    await sleep(10);
  }

  const mock = {
    port,
    pid: child.pid,
    child,
    /** OpenAI base URL, what a provider's endpoint_url should be. */
    url: `http://127.0.0.1:${port}/v1`,
    baseUrl: `http://127.0.0.1:${port}`,
    /** Received requests, oldest first (an array that also has .requests). since: only seq > since. */
    async record(since) {
      const q = since ? `?since=${since}` : '';
      const body = await control(port, 'GET', `/_mock/record${q}`);
      const list = body.requests;
      list.requests = list;
      return list;
    },
    /** {requests, by_status, by_key: {K: {accepted, rejected_429}}, open_connections, aborted, max_concurrent_streams, ...} */
    stats() {
      return control(port, 'GET', '/_mock/stats');
    },
    /** Clear the record, the windows, the per-key faults and the counters. */
    reset() {
      return control(port, 'POST', '/_mock/reset', {});
    },
    /**
     * Add or change a key. rpm 0 = unlimited; fault like 'status=500' (null clears it,
     * undefined leaves it); count = how many requests get the fault (0 = all).
     */
    setKey(key, rpm, fault, count, retryAfter) {
      return control(port, 'POST', '/_mock/key', {
        key, rpm, fault, fault_count: count, retry_after: retryAfter,
      });
    },
    /**
     * Per-model windows of a key, {model: rpm}: a request for that model is
     * admitted only when the key's and the model's windows both have room
     * (429 at once otherwise). stats().by_key lists each as `${key}\x1f${model}`.
     */
    setModelRpm(key, modelRpm) {
      return control(port, 'POST', '/_mock/key', { key, model_rpm: modelRpm });
    },
    /** Poll the record until pred(entries) is truthy; returns the entries. */
    async waitRecord(pred, timeoutMs = 5000) {
      const end = Date.now() + timeoutMs;
      for (;;) {
        const list = await mock.record();
        if (pred(list)) return list;
        if (Date.now() > end) throw new Error(`mock record condition not met within ${timeoutMs} ms`);
        await sleep(20);
      }
    },
    stderr() {
      return errText;
    },
    /** SIGTERM, wait for exit (SIGKILL after 5 s); resolves to {code, signal}. */
    async stop() {
      if (!exited) {
        child.kill('SIGTERM');
        const t = setTimeout(() => child.kill('SIGKILL'), 5000);
        await exitPromise;
        clearTimeout(t);
      }
      rmSync(dir, { recursive: true, force: true });
      return exited;
    },
  };
  return mock;
}
