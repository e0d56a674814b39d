// The `{{name}}` step: a tether step component written in JavaScript (componentize-qjs).
//
// It receives the run's (or the previous step's) JSON input and returns JSON. Replace the
// body of `run` with your own logic; the host calls it once per attempt, in a fresh sandbox.
import { log, callTool, reportUsage } from 'tether:plugin/host@0.1.0';

// Throwing `{ payload: failure }` ends the step with class `guest_error`; throwing an
// Error traps (class `trap`, the message is in the step's log).
const fail = (message) => ({ payload: { kind: 'invalid-input', message } });

export const step = {
  run(input) {
    let fields;
    try {
      fields = JSON.parse(input);
    } catch (e) {
      throw fail(`input is not JSON: ${e.message}`);
    }
    if (fields === null || typeof fields !== 'object' || Array.isArray(fields)) {
      throw fail('input must be a JSON object');
    }
    const who = fields.name ?? 'world';
    log('info', `greeting ${who}`);

    // Tools are called by name; the workflow must grant them to this step. A tool's
    // failure is thrown as `{ payload }` and, uncaught here, becomes this step's failure.
    const tool = typeof fields.tool === 'string' ? JSON.parse(callTool(fields.tool, JSON.stringify({ text: who }))) : null;

    // Usage the host cannot measure itself (model tokens, money) is reported by name.
    reportUsage('tokens', String(who).split(/\s+/).length);
    return JSON.stringify({ greeting: `hello, ${who}`, step: '{{name}}', tool });
  },
};
