// Mixed-language example, step 4 (JavaScript): format the triaged, summarized message as
// a short Markdown report for the support queue.
//
// It logs, asks the `markdown-table` tool to render the facts, reports usage, and throws
// a `{ payload: failure }` value for input it cannot use (that becomes the WIT `err`).
// `{"crash": true}` throws a plain Error instead, which traps: the host records class
// `trap` (tests use it).
import { log, callTool, reportUsage } from 'tether:plugin/host@0.1.0';

function fail(kind, message) {
  // componentize-qjs turns a thrown object with a `payload` into `result::err(payload)`.
  return { payload: { kind, message } };
}

export const step = {
  run(input) {
    let data;
    try {
      data = JSON.parse(input);
    } catch (e) {
      throw fail('invalid-input', `input is not JSON: ${e.message}`);
    }
    if (data === null || typeof data !== 'object') throw fail('invalid-input', 'input must be a JSON object');
    if (data.crash) throw new Error('asked to crash');
    const { subject, category, urgency, summary, tone } = data;
    if (typeof summary !== 'string' || summary.length === 0) {
      throw fail('invalid-input', '`summary` must be a non-empty string');
    }
    log('info', `formatting a ${urgency ?? 'normal'} ${category ?? 'general'} report`);
    const table = JSON.parse(
      callTool(
        'markdown-table',
        JSON.stringify({
          header: ['field', 'value'],
          rows: [
            ['category', category ?? 'general'],
            ['urgency', urgency ?? 'normal'],
            ['tone', tone ?? 'unknown'],
          ],
        }),
      ),
    );
    const title = `## ${subject ?? 'Support message'}`;
    const markdown = `${title}\n\n${summary}\n\n${table.markdown}`;
    reportUsage('chars', markdown.length);
    return JSON.stringify({ markdown, lines: markdown.split('\n').length });
  },
};
