// The `{{name}}` tool: a tether tool component written in JavaScript (componentize-qjs).
//
// Steps call it by name with JSON input (`call-tool`); each call runs in its own sandbox.
// `describe` tells the host and the steps what it does and what it changes in the world.
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
