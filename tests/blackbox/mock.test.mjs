// Black-box tests of the mock upstream itself (tests/mock-upstream.c): every
// endpoint, SSE shape and timing, keys and the sliding window, each fault
// mode, the control API, keep-alive and pipelining, big bodies, and 500
// concurrent streams. Other black-box tests rely on all of this.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { startMock } from './lib/mock.mjs';

const KEY = 'nvapi-TEST-0001-xxxxxxxxxxxxxxxx';
const KEY_RPM3 = 'nvapi-TEST-0002-xxxxxxxxxxxxxxxx';
const KEY_FAULT = 'nvapi-TEST-0003-xxxxxxxxxxxxxxxx';
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

let mock;
const agent = new http.Agent({ keepAlive: false, maxSockets: Infinity });

// One HTTP request with node:http; resolves {status, headers, body (string), chunks [{t, data}]}.
function request(method, path, { key = KEY, body, headers = {}, timeoutMs = 20000, useAgent = agent } = {}) {
  return new Promise((resolve, reject) => {
    const data = body === undefined ? undefined : Buffer.from(typeof body === 'string' ? body : JSON.stringify(body));
    const h = { ...headers };
    if (key) h.authorization = `Bearer ${key}`;
    if (data) {
      h['content-type'] = 'application/json';
      h['content-length'] = data.length;
    }
    const t0 = Date.now();
    const req = http.request({ host: '127.0.0.1', port: mock.port, method, path, headers: h, agent: useAgent }, (res) => {
      const chunks = [];
      res.on('data', (d) => chunks.push({ t: Date.now() - t0, data: d }));
      res.on('end', () => resolve({
        status: res.statusCode, headers: res.headers, chunks, socket: res.socket,
        body: Buffer.concat(chunks.map((c) => c.data)).toString('utf8'), ms: Date.now() - t0,
      }));
      res.on('error', reject);
    });
    req.setTimeout(timeoutMs, () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end(data);
  });
}

const chat = (extra = {}, opts = {}) => request('POST', '/v1/chat/completions', {
  body: { model: 'meta/llama-3.1-8b-instruct', messages: [{ role: 'user', content: 'hi' }], ...extra }, ...opts,
});

// SSE data payloads of a stream body, in order.
function sseEvents(text) {
  return text.split('\n\n').filter((e) => e.startsWith('data: ')).map((e) => e.slice(6));
}

// Raw TCP exchange: send `payload`, collect everything until the peer ends or resets.
function raw(payload, { waitMs = 10000 } = {}) {
  return new Promise((resolve) => {
    const s = net.connect(mock.port, '127.0.0.1');
    const parts = [];
    const t0 = Date.now();
    const times = [];
    let done = false;
    const finish = (how, err) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      s.destroy();
      resolve({ how, err, text: Buffer.concat(parts).toString('latin1'), times, ms: Date.now() - t0 });
    };
    const timer = setTimeout(() => finish('timeout'), waitMs);
    s.on('connect', () => s.write(payload));
    s.on('data', (d) => { parts.push(d); times.push(Date.now() - t0); });
    s.on('end', () => finish('end'));
    s.on('error', (err) => finish('error', err));
  });
}

const postHead = (path, body, extra = '') =>
  `POST ${path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${KEY}\r\nContent-Type: application/json\r\n` +
  `Content-Length: ${Buffer.byteLength(body)}\r\n${extra}\r\n${body}`;

before(async () => {
  mock = await startMock({
    keys: [{ key: KEY }, { key: KEY_RPM3, rpm: 3 }, { key: KEY_FAULT }],
    windowMs: 1000, chunks: 5, intervalMs: 10,
  });
});

after(async () => {
  const exit = await mock.stop();
  agent.destroy();
  assert.equal(exit.code, 0, 'SIGTERM exits 0');
});

describe('endpoints', () => {
  it('GET /v1/models lists NIM-like ids and carries x-mock-request-seq', async () => {
    const r = await request('GET', '/v1/models');
    assert.equal(r.status, 200);
    const ids = JSON.parse(r.body).data.map((m) => m.id);
    for (const id of ['meta/llama-3.1-8b-instruct', 'deepseek-ai/deepseek-r1', 'nvidia/nv-embedqa-e5-v5']) assert.ok(ids.includes(id), id);
    assert.match(r.headers['x-mock-request-seq'], /^\d+$/);
  });

  it('POST /v1/chat/completions answers a chat.completion with deterministic usage', async () => {
    const body = { model: 'deepseek-ai/deepseek-r1', messages: [{ role: 'user', content: 'x'.repeat(250) }] };
    const len = Buffer.byteLength(JSON.stringify(body));
    const r = await request('POST', '/v1/chat/completions', { body, headers: { 'x-mock-chunks': '3' } });
    assert.equal(r.status, 200);
    const j = JSON.parse(r.body);
    assert.equal(j.object, 'chat.completion');
    assert.equal(j.model, 'deepseek-ai/deepseek-r1');
    assert.equal(j.choices[0].message.role, 'assistant');
    assert.equal(j.choices[0].message.content, 'Hello from the');
    assert.equal(j.choices[0].finish_reason, 'stop');
    assert.deepEqual(j.usage, { prompt_tokens: Math.ceil(len / 100), completion_tokens: 3, total_tokens: Math.ceil(len / 100) + 3 });
  });

  it('POST /v1/completions answers text_completion, streamed or not', async () => {
    const r = await request('POST', '/v1/completions', { body: { model: 'm', prompt: 'p' } });
    const j = JSON.parse(r.body);
    assert.equal(j.object, 'text_completion');
    assert.equal(j.choices[0].text, 'Hello from the mock upstream');
    assert.equal(j.usage.completion_tokens, 5);
    const s = await request('POST', '/v1/completions', { body: { model: 'm', prompt: 'p', stream: true } });
    assert.match(s.headers['content-type'], /text\/event-stream/);
    const ev = sseEvents(s.body);
    assert.equal(ev.at(-1), '[DONE]');
    const objs = ev.slice(0, -1).map((e) => JSON.parse(e));
    assert.equal(objs.length, 5);
    assert.ok(objs.every((o) => o.object === 'text_completion'));
    assert.equal(objs.map((o) => o.choices[0].text).join(''), 'Hello from the mock upstream');
  });

  it('POST /v1/embeddings gives one deterministic vector per input, float or base64', async () => {
    const r1 = await request('POST', '/v1/embeddings', { body: { model: 'nvidia/nv-embedqa-e5-v5', input: ['a', 'b', 'a'] } });
    assert.equal(r1.status, 200);
    const j = JSON.parse(r1.body);
    assert.equal(j.data.length, 3);
    assert.deepEqual(j.data[0].embedding, j.data[2].embedding);
    assert.notDeepEqual(j.data[0].embedding, j.data[1].embedding);
    assert.ok(j.data[0].embedding.length > 0 && j.data[0].embedding.every((x) => x >= -1 && x < 1));
    assert.equal(j.usage.prompt_tokens, j.usage.total_tokens);
    const r2 = await request('POST', '/v1/embeddings', { body: { model: 'e', input: 'a', encoding_format: 'base64' } });
    const b64 = JSON.parse(r2.body).data[0].embedding;
    const buf = Buffer.from(b64, 'base64');
    const floats = Array.from(new Float32Array(buf.buffer, buf.byteOffset, buf.length / 4));
    assert.deepEqual(floats, j.data[0].embedding);
    const r3 = await request('POST', '/v1/embeddings', { body: { model: 'e' } });
    assert.equal(r3.status, 400);
  });

  it('unknown paths are 404, wrong methods 405, bad JSON 400', async () => {
    assert.equal((await request('GET', '/v1/nothing')).status, 404);
    assert.equal((await request('GET', '/v1/chat/completions')).status, 405);
    assert.equal((await request('POST', '/v1/chat/completions', { body: '{"model":' })).status, 400);
  });
});

describe('streaming', () => {
  it('sends one token per chunk, spaced by the interval, then [DONE]; no usage chunk by default', async () => {
    const r = await chat({ stream: true }, { headers: { 'x-mock-chunks': '5', 'x-mock-interval-ms': '100' } });
    assert.equal(r.status, 200);
    assert.equal(r.headers['transfer-encoding'], 'chunked');
    const ev = sseEvents(r.body);
    assert.equal(ev.at(-1), '[DONE]');
    const objs = ev.slice(0, -1).map((e) => JSON.parse(e));
    assert.equal(objs.length, 5);
    assert.ok(objs.every((o) => o.object === 'chat.completion.chunk' && o.choices.length === 1));
    assert.equal(objs[0].choices[0].delta.role, 'assistant');
    assert.equal(objs.map((o) => o.choices[0].delta.content).join(''), 'Hello from the mock upstream');
    assert.equal(objs[4].choices[0].finish_reason, 'stop');
    assert.ok(!objs.some((o) => o.usage), 'no usage without include_usage');
    // chunks arrive spread over time, not in one piece at the end
    const dataTimes = r.chunks.map((c) => c.t);
    assert.ok(r.chunks.length >= 5, `got ${r.chunks.length} network chunks`);
    assert.ok(dataTimes.at(-1) - dataTimes[0] >= 350, `spread ${dataTimes.at(-1) - dataTimes[0]} ms`);
  });

  it('adds a usage-only chunk when stream_options.include_usage is true', async () => {
    const r = await chat({ stream: true, stream_options: { include_usage: true } }, { headers: { 'x-mock-chunks': '4' } });
    const ev = sseEvents(r.body);
    assert.equal(ev.at(-1), '[DONE]');
    const usage = JSON.parse(ev.at(-2));
    assert.deepEqual(usage.choices, []);
    assert.equal(usage.usage.completion_tokens, 4);
    assert.equal(usage.usage.total_tokens, usage.usage.prompt_tokens + 4);
    assert.equal(ev.length, 4 + 2);
  });

  it('holds the first chunk for X-Mock-First-Delay-Ms', async () => {
    const r = await chat({ stream: true }, { headers: { 'x-mock-first-delay-ms': '300', 'x-mock-chunks': '2' } });
    const first = r.chunks.find((c) => c.data.toString().includes('"content"'));
    assert.ok(first.t >= 280, `first content after ${first.t} ms`);
  });

  it('X-Mock-Latency-Ms delays a non-streaming answer', async () => {
    const r = await chat({}, { headers: { 'x-mock-latency-ms': '300' } });
    assert.equal(r.status, 200);
    assert.ok(r.ms >= 280, `${r.ms} ms`);
  });

  it('X-Mock-Chunk-Bytes pads each token, streamed or not', async () => {
    const r = await chat({ stream: true }, { headers: { 'x-mock-chunks': '3', 'x-mock-chunk-bytes': '1000' } });
    const objs = sseEvents(r.body).slice(0, -1).map((e) => JSON.parse(e));
    assert.deepEqual(objs.map((o) => o.choices[0].delta.content.length), [1000, 1000, 1000]);
    assert.ok(objs[1].choices[0].delta.content.startsWith(' from...'));
    const n = JSON.parse((await chat({}, { headers: { 'x-mock-chunks': '2', 'x-mock-chunk-bytes': '10' } })).body);
    assert.equal(n.choices[0].message.content, 'Hello..... from.....');
    assert.equal(n.usage.completion_tokens, 2);
  });

  it('a client closing mid-stream is recorded as aborted', async () => {
    const before = (await mock.stats()).aborted;
    const seq = await new Promise((resolve, reject) => {
      const body = JSON.stringify({ model: 'm', stream: true });
      const req = http.request({
        host: '127.0.0.1', port: mock.port, method: 'POST', path: '/v1/chat/completions', agent: false,
        headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json', 'x-mock-chunks': '100', 'x-mock-interval-ms': '100' },
      }, (res) => {
        res.once('data', () => { req.destroy(); resolve(Number(res.headers['x-mock-request-seq'])); });
      });
      req.on('error', () => {});
      req.end(body);
      setTimeout(() => reject(new Error('no data')), 5000);
    });
    const rec = await mock.waitRecord((l) => l.find((e) => e.seq === seq)?.aborted, 3000);
    const e = rec.find((x) => x.seq === seq);
    assert.ok(e.t_end_ms - e.t_ms < 2000, 'seen well before the stream would have ended');
    const st = await mock.stats();
    assert.equal(st.aborted, before + 1);
    assert.equal(st.active_streams, 0);
  });

  it('streams a tool call when the request has tools', async () => {
    const tools = [{ type: 'function', function: { name: 'get_weather', parameters: { type: 'object' } } }];
    const r = await chat({ stream: true, tools }, { headers: { 'x-mock-chunks': '4' } });
    const objs = sseEvents(r.body).slice(0, -1).map((e) => JSON.parse(e));
    assert.equal(objs.length, 4);
    const calls = objs.map((o) => o.choices[0].delta.tool_calls[0]);
    assert.equal(calls[0].function.name, 'get_weather');
    assert.match(calls[0].id, /^call_/);
    assert.deepEqual(JSON.parse(calls.map((c) => c.function.arguments).join('')), { location: 'Paris, France', unit: 'celsius' });
    assert.equal(objs.at(-1).choices[0].finish_reason, 'tool_calls');
    const n = JSON.parse((await chat({ tools })).body);
    assert.equal(n.choices[0].message.tool_calls[0].function.name, 'get_weather');
  });

  it('X-Mock-Tool: one call of the named tool first, text once a tool result is in the messages', async () => {
    const tools = [{ type: 'function', function: { name: 'read', parameters: { type: 'object' } } }];
    const args = JSON.stringify({ path: '/tmp/a "b".txt' });
    const headers = { 'x-mock-tool': 'read', 'x-mock-tool-args': args };
    const first = [{ role: 'user', content: 'hi' }];
    const r = await chat({ stream: true, tools, messages: first }, { headers });
    const objs = sseEvents(r.body).slice(0, -1).map((e) => JSON.parse(e));
    assert.equal(objs.length, 1, 'the whole call in one chunk');
    const call = objs[0].choices[0].delta.tool_calls[0];
    assert.equal(call.function.name, 'read');
    assert.equal(call.function.arguments, args);
    assert.equal(objs[0].choices[0].finish_reason, 'tool_calls');
    const n = JSON.parse((await chat({ tools, messages: first }, { headers })).body);
    assert.equal(n.choices[0].message.tool_calls[0].function.arguments, args);
    // a tool result anywhere in the conversation (OpenClaw appends context after it): text
    const second = [...first, { role: 'assistant', content: null, tool_calls: [call] },
      { role: 'tool', tool_call_id: call.id, content: 'x' }, { role: 'user', content: [{ type: 'text', text: 'ctx' }] }];
    const t = sseEvents((await chat({ stream: true, tools, messages: second }, { headers })).body).slice(0, -1).map((e) => JSON.parse(e));
    assert.equal(t.map((o) => o.choices[0].delta.content).join(''), 'Hello from the mock upstream');
    // none: text although the request has tools; no arguments header: {}
    const plain = JSON.parse((await chat({ tools, messages: first }, { headers: { 'x-mock-tool': 'none' } })).body);
    assert.equal(plain.choices[0].message.content, 'Hello from the mock upstream');
    const noargs = JSON.parse((await chat({ tools, messages: first }, { headers: { 'x-mock-tool': 'ls' } })).body);
    assert.equal(noargs.choices[0].message.tool_calls[0].function.arguments, '{}');
  });
});

describe('keys and limits', () => {
  it('unknown or missing key: 401 with NIM body', async () => {
    for (const key of ['nvapi-TEST-9999-unknown', null]) {
      const r = await request('GET', '/v1/models', { key });
      assert.equal(r.status, 401);
      assert.equal(r.body, '{"status":401,"title":"Unauthorized","detail":"Authentication failed"}');
    }
  });

  it('exact sliding window: rpm 3 on 1000 ms', async () => {
    const codes = [];
    for (let i = 0; i < 4; i++) codes.push((await request('GET', '/v1/models', { key: KEY_RPM3 })).status);
    assert.deepEqual(codes, [200, 200, 200, 429]);
    const r = await request('GET', '/v1/models', { key: KEY_RPM3 });
    assert.equal(r.status, 429);
    assert.equal(r.body, '{"status":429,"title":"Too Many Requests"}');
    // rejected requests do not count: once the three accepted ones are 1000 ms old, all is open again
    const rec = (await mock.record()).filter((e) => e.key === KEY_RPM3 && e.status === 200);
    const oldest = rec.at(-3).t_ms;
    const newest = rec.at(-1).t_ms;
    const now = (await mock.record()).at(-1).t_ms;
    await sleep(Math.max(0, oldest + 1000 - now + 30));
    assert.equal((await request('GET', '/v1/models', { key: KEY_RPM3 })).status, 200);
    // ... but the two newer ones still count if they are under 1000 ms old
    const after1 = (await mock.record()).at(-1).t_ms;
    if (after1 < newest + 1000 - 50) {
      assert.equal((await request('GET', '/v1/models', { key: KEY_RPM3 })).status, 200);
      assert.equal((await request('GET', '/v1/models', { key: KEY_RPM3 })).status, 429);
    }
    const st = await mock.stats();
    assert.ok(st.by_key[KEY_RPM3].rejected_429 >= 2);
  });

  it('per-key faults through the control API, with a count', async () => {
    await mock.setKey(KEY_FAULT, 0, 'status=503', 2);
    assert.equal((await request('GET', '/v1/models', { key: KEY_FAULT })).status, 503);
    const r = await request('GET', '/v1/models', { key: KEY_FAULT });
    assert.equal(r.status, 503);
    assert.deepEqual(JSON.parse(r.body), { status: 503, title: 'Service Unavailable' });
    assert.equal((await request('GET', '/v1/models', { key: KEY_FAULT })).status, 200);
    await mock.setKey('nvapi-TEST-0004-added-at-runtime', 1);
    assert.equal((await request('GET', '/v1/models', { key: 'nvapi-TEST-0004-added-at-runtime' })).status, 200);
    assert.equal((await request('GET', '/v1/models', { key: 'nvapi-TEST-0004-added-at-runtime' })).status, 429);
    await mock.setKey(KEY_FAULT, 0, 'status=429', 1, 7);
    const r429 = await request('GET', '/v1/models', { key: KEY_FAULT });
    assert.equal(r429.status, 429);
    assert.equal(r429.headers['retry-after'], '7');
    await mock.setKey(KEY_FAULT, 0, null);
  });
});

describe('fault modes', () => {
  it('status=CODE answers NIM-shaped, 429 with Retry-After when asked', async () => {
    const r = await chat({ stream: true }, { headers: { 'x-mock-fault': 'status=500' } });
    assert.equal(r.status, 500);
    assert.deepEqual(JSON.parse(r.body), { status: 500, title: 'Internal Server Error' });
    const r2 = await chat({}, { headers: { 'x-mock-fault': 'status=429', 'x-mock-retry-after': '3' } });
    assert.equal(r2.status, 429);
    assert.equal(r2.headers['retry-after'], '3');
    assert.equal(r2.body, '{"status":429,"title":"Too Many Requests"}');
    assert.equal((await chat({}, { headers: { 'x-mock-fault': 'bogus' } })).status, 400);
  });

  it('hang never answers; the client giving up is recorded as aborted', async () => {
    for (const fault of ['hang', 'hang-first-byte']) {
      await assert.rejects(chat({}, { headers: { 'x-mock-fault': fault }, timeoutMs: 300 }), /timeout/);
    }
    const rec = await mock.waitRecord((l) => l.filter((e) => e.headers['x-mock-fault']?.startsWith('hang') && e.aborted).length === 2);
    assert.ok(rec.filter((e) => e.headers['x-mock-fault']?.startsWith('hang')).every((e) => e.status === null));
  });

  it('reset-after=N sends N chunks then resets the connection', async () => {
    const body = JSON.stringify({ model: 'm', stream: true, messages: [] });
    const r = await raw(postHead('/v1/chat/completions', body, 'X-Mock-Fault: reset-after=2\r\nX-Mock-Interval-Ms: 20\r\n'));
    assert.equal(r.how, 'error');
    assert.equal(r.err.code, 'ECONNRESET');
    assert.equal((r.text.match(/data: \{/g) || []).length, 2);
    assert.ok(!r.text.includes('[DONE]'));
  });

  it('close-after=N sends N chunks then closes cleanly, without the last chunk', async () => {
    const body = JSON.stringify({ model: 'm', stream: true, messages: [] });
    const r = await raw(postHead('/v1/chat/completions', body, 'X-Mock-Fault: close-after=3\r\n'));
    assert.equal(r.how, 'end');
    assert.equal((r.text.match(/data: \{/g) || []).length, 3);
    assert.ok(!r.text.includes('[DONE]') && !r.text.endsWith('0\r\n\r\n'));
  });

  it('malformed gives 200 with a body that is not JSON; html gives text/html', async () => {
    const m = await chat({}, { headers: { 'x-mock-fault': 'malformed' } });
    assert.equal(m.status, 200);
    assert.throws(() => JSON.parse(m.body));
    const h = await chat({}, { headers: { 'x-mock-fault': 'html' } });
    assert.equal(h.status, 200);
    assert.match(h.headers['content-type'], /^text\/html/);
    assert.match(h.body, /<html>/);
  });

  it('drip=MS sends the answer one byte at a time', async () => {
    const body = JSON.stringify({ model: 'm', messages: [] });
    const r = await raw(postHead('/v1/chat/completions', body, 'X-Mock-Fault: drip=2\r\nX-Mock-Chunks: 1\r\nConnection: close\r\n'));
    assert.equal(r.how, 'end');
    const [, respBody] = r.text.split('\r\n\r\n');
    assert.equal(JSON.parse(respBody).choices[0].message.content, 'Hello');
    assert.ok(r.times.length > 100, `${r.times.length} reads`);
    assert.ok(r.ms >= r.text.length * 2 * 0.8, `${r.text.length} bytes in ${r.ms} ms`);
  });

  it('slow-headers=MS trickles the header block, then the body at once', async () => {
    const body = JSON.stringify({ model: 'm', messages: [] });
    const r = await raw(postHead('/v1/chat/completions', body, 'X-Mock-Fault: slow-headers=4\r\nConnection: close\r\n'));
    const headLen = r.text.indexOf('\r\n\r\n') + 4;
    assert.ok(r.ms >= headLen * 4 * 0.8, `${headLen} header bytes in ${r.ms} ms`);
    assert.equal(JSON.parse(r.text.slice(headLen)).object, 'chat.completion');
  });

  it('delay=MS holds the whole answer, streams included', async () => {
    const r = await chat({ stream: true }, { headers: { 'x-mock-fault': 'delay=300' } });
    assert.ok(r.chunks[0].t >= 280, `first byte after ${r.chunks[0].t} ms`);
    assert.equal(sseEvents(r.body).at(-1), '[DONE]');
  });
});

describe('connections', () => {
  it('reuses a keep-alive connection', async () => {
    const ka = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const seqs = [];
    for (let i = 0; i < 4; i++) {
      const r = await chat(i % 2 ? { stream: true } : {}, { useAgent: ka });
      assert.equal(r.status, 200);
      seqs.push(Number(r.headers['x-mock-request-seq']));
    }
    ka.destroy();
    const rec = await mock.record();
    const conns = new Set(rec.filter((e) => seqs.includes(e.seq)).map((e) => e.conn));
    assert.equal(conns.size, 1);
  });

  it('answers pipelined requests in order', async () => {
    const body = JSON.stringify({ model: 'm', messages: [] });
    const one = postHead('/v1/chat/completions', body, 'X-Mock-Chunks: 1\r\n');
    const models = `GET /v1/models HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${KEY}\r\n\r\n`;
    const streamed = postHead('/v1/chat/completions', JSON.stringify({ model: 'm', stream: true }), 'X-Mock-Chunks: 2\r\n');
    const last = `GET /v1/models HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${KEY}\r\nConnection: close\r\n\r\n`;
    const r = await raw(one + models + streamed + last);
    assert.equal(r.how, 'end');
    assert.equal((r.text.match(/HTTP\/1\.1 200 OK/g) || []).length, 4);
    const seqs = [...r.text.matchAll(/x-mock-request-seq: (\d+)/g)].map((m) => Number(m[1]));
    assert.deepEqual(seqs, [seqs[0], seqs[0] + 1, seqs[0] + 2, seqs[0] + 3]);
    assert.ok(r.text.indexOf('[DONE]') < r.text.lastIndexOf('"object":"list"'));
  });

  it('answers Expect: 100-continue before the body is sent', async () => {
    const body = JSON.stringify({ model: 'm', messages: [] });
    const res = await new Promise((resolve, reject) => {
      const s = net.connect(mock.port, '127.0.0.1');
      let text = '';
      s.on('connect', () => s.write(`POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${KEY}\r\n` +
        `Content-Length: ${body.length}\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n`));
      s.on('data', (d) => {
        const first = text === '';
        text += d;
        if (first && text.startsWith('HTTP/1.1 100 Continue\r\n\r\n')) s.write(body);
      });
      s.on('end', () => resolve(text));
      s.on('error', reject);
    });
    assert.match(res, /^HTTP\/1\.1 100 Continue\r\n\r\nHTTP\/1\.1 200 OK/);
  });

  it('refuses bad framing and oversized heads, then closes', async () => {
    const bad = await raw('GET /v1/models HTTP/1.1\r\nHost: x\r\nContent-Length: 12x\r\n\r\n');
    assert.match(bad.text, /^HTTP\/1\.1 400 /);
    assert.match(bad.text, /Connection: close/);
    assert.equal(bad.how, 'end');
    const both = await raw('POST /v1/models HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n');
    assert.match(both.text, /^HTTP\/1\.1 400 /);
    const fold = await raw('GET /v1/models HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n continued\r\n\r\n');
    assert.match(fold.text, /^HTTP\/1\.1 400 /);
    const huge = await raw(`GET /v1/models HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(70000)}\r\n\r\n`);
    assert.match(huge.text, /^HTTP\/1\.1 431 /);
    const chunkBad = await raw('POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n');
    assert.match(chunkBad.text, /^HTTP\/1\.1 400 /);
  });

  it('accepts a 20 MB body, with Content-Length and chunked', async () => {
    const big = JSON.stringify({ model: 'm', messages: [{ role: 'user', content: 'y'.repeat(20 * 1024 * 1024) }] });
    const r = await request('POST', '/v1/chat/completions', { body: big, headers: { 'x-mock-chunks': '1' } });
    assert.equal(r.status, 200);
    assert.equal(JSON.parse(r.body).usage.prompt_tokens, Math.ceil(big.length / 100));
    const chunked = await new Promise((resolve, reject) => {
      const req = http.request({
        host: '127.0.0.1', port: mock.port, method: 'POST', path: '/v1/chat/completions', agent,
        headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json', 'x-mock-chunks': '1' },
      }, (res) => {
        let t = '';
        res.on('data', (d) => { t += d; });
        res.on('end', () => resolve({ status: res.statusCode, body: t }));
      });
      req.on('error', reject);
      for (let off = 0; off < big.length; off += 1 << 20) req.write(big.slice(off, off + (1 << 20)));
      req.end();
    });
    assert.equal(chunked.status, 200);
    assert.equal(JSON.parse(chunked.body).usage.prompt_tokens, Math.ceil(big.length / 100));
    const rec = (await mock.record()).filter((e) => e.body_len === big.length);
    assert.equal(rec.length, 2);
    assert.equal(rec[0].body.length, 64 * 1024);
    assert.equal(rec[1].headers['transfer-encoding'], 'chunked');
  });

  it('serves 500 concurrent streaming connections to completion', async () => {
    await mock.reset();
    const n = 500;
    const all = await Promise.all(Array.from({ length: n }, () =>
      chat({ stream: true }, { headers: { 'x-mock-chunks': '5', 'x-mock-interval-ms': '100' }, timeoutMs: 30000 })));
    assert.ok(all.every((r) => r.status === 200 && sseEvents(r.body).at(-1) === '[DONE]' && sseEvents(r.body).length === 6));
    const st = await mock.stats();
    assert.equal(st.by_status['200'], n);
    assert.ok(st.max_concurrent_streams >= 300, `max concurrent ${st.max_concurrent_streams}`);
  });
});

describe('control API', () => {
  it('record holds what was received; stats count it; reset clears both', async () => {
    await mock.reset();
    let st = await mock.stats();
    assert.equal(st.requests, 0);
    await chat({ stream: true, stream_options: { include_usage: true } }, { headers: { 'X-Custom-Thing': 'abc' } });
    await request('GET', '/v1/models', { key: 'nvapi-TEST-9999-unknown' });
    const rec = await mock.record();
    assert.equal(rec.length, 2);
    assert.equal(rec.requests, rec);
    const [a, b] = rec;
    assert.equal(a.seq, 1);
    assert.equal(a.key, KEY);
    assert.equal(a.method, 'POST');
    assert.equal(a.path, '/v1/chat/completions');
    assert.equal(a.model, 'meta/llama-3.1-8b-instruct');
    assert.equal(a.stream, true);
    assert.equal(a.include_usage, true);
    assert.equal(a.status, 200);
    assert.equal(a.aborted, false);
    assert.equal(a.headers['x-custom-thing'], 'abc');
    assert.equal(a.headers.authorization, `Bearer ${KEY}`);
    assert.equal(JSON.parse(a.body).model, a.model);
    assert.equal(a.body_len, Buffer.byteLength(a.body));
    assert.deepEqual(a.usage, { prompt_tokens: Math.ceil(a.body_len / 100), completion_tokens: 5, total_tokens: Math.ceil(a.body_len / 100) + 5 });
    assert.ok(a.t_ms >= 0 && a.t_end_ms >= a.t_ms);
    assert.equal(b.seq, 2);
    assert.equal(b.status, 401);
    assert.equal(b.usage, null);
    assert.equal(b.model, null);
    assert.equal((await mock.record(1)).length, 1);
    st = await mock.stats();
    assert.equal(st.requests, 2);
    assert.equal(st.by_status['200'], 1);
    assert.equal(st.by_status['401'], 1);
    assert.equal(st.by_key[KEY].accepted, 1);
    assert.ok(st.open_connections >= 1);
    assert.equal(typeof st.aborted, 'number');
    await mock.reset();
    assert.equal((await mock.record()).length, 0);
    assert.equal((await mock.stats()).by_key[KEY].accepted, 0);
  });

  it('records the response body as sent, de-chunked', async () => {
    await mock.reset();
    const s = await chat({ stream: true, stream_options: { include_usage: true } }, { headers: { 'x-mock-chunks': '3' } });
    const n = await chat({});
    const e401 = await request('GET', '/v1/models', { key: 'nvapi-TEST-9999-unknown' });
    await assert.rejects(chat({}, { headers: { 'x-mock-fault': 'hang' }, timeoutMs: 100 }));
    const rec = await mock.record();
    assert.equal(rec[0].response, s.body);
    assert.equal(rec[1].response, n.body);
    assert.equal(rec[2].response, e401.body);
    assert.equal(rec[3].response, null);
  });

  it('rejects bad control calls', async () => {
    await assert.rejects(mock.setKey('', 1), /400/);
    await assert.rejects(mock.setKey('k', 1, 'explode'), /400/);
    const r = await request('GET', '/_mock/nothing', { key: null });
    assert.equal(r.status, 404);
  });
});
