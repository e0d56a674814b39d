// The `{{name}}` tool: a tether tool component written in JavaScript (componentize-qjs).
//
// Steps call it by name with JSON input (`call-tool`); each call runs in its own sandbox.
// `describe` tells the host and the steps what it does and what it changes in the world.
//
// External effects. A tool that pays or sends mail must do it at most once per idempotency
// key (`idempotencyKey()` from tool-host): after a crash between the effect and its journal
// entry, the host calls the tool again with the same key. The Rust, Python and C templates
// show how: claim the key atomically by creating `/state/<the key in hex>` with
// O_CREAT|O_EXCL (exactly one call per key succeeds), act only if this call created it, then
// write the result into it; any other call returns the recorded result and does not act.
// A JavaScript tool cannot do this: componentize-qjs gives QuickJS no filesystem or network
// API, and the tool world imports only tool-host (importing 'wasi:filesystem/...' does not
// resolve). So a JavaScript tool has no external effect of its own: declare 'read-only' or
// 'idempotent', and write a tool with an external effect in Rust, Python or C. In a runtime
// that has an exclusive create (Node's fs), the claim would read:
//
//   const path = `/state/${hex(idempotencyKey())}`;
//   let fd;
//   try {
//     fd = fs.openSync(path, 'wx'); // O_CREAT|O_EXCL: only the first call with the key gets here
//   } catch (e) {
//     if (e.code === 'EEXIST') return recordedResult(path); // the first call's result, no second effect
//     throw e;
//   }
//   const result = act();
//   fs.writeSync(fd, `${result}\n`);
//   fs.fsyncSync(fd);
//   fs.closeSync(fd);
//   return result;
import { log, reportUsage } from 'tether:plugin/tool-host@0.1.0';

export const tool = {
  describe() {
    return {
      name: '{{name}}',
      description: 'Counts the characters of a text.',
      inputSchema: JSON.stringify({ type: 'object', required: ['text'], properties: { text: { type: 'string' } } }),
      outputSchema: JSON.stringify({ type: 'object', properties: { chars: { type: 'integer' } } }),
      // 'read-only', 'idempotent' or 'external': policies and approvals look at it.
      effect: 'read-only',
    };
  },
  call(input) {
    let text;
    try {
      text = JSON.parse(input).text;
    } catch {
      text = undefined;
    }
    if (typeof text !== 'string') {
      throw { payload: { kind: 'invalid-input', message: 'expected {"text": string}' } };
    }
    log('debug', `${text.length} characters`);
    reportUsage('chars', text.length);
    return JSON.stringify({ tool: '{{name}}', chars: text.length });
  },
};
